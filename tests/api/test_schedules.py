"""Schedules through HTTP: CRUD, refused definitions, fires (every_ms and 6-field cron),
pause/resume, trigger, and schedules surviving kill -9 with a missed fire made up once."""

import time

import pytest

from conftest import assert_error, now_ms, wait_until


def mk(s, **body):
    body.setdefault("name", s.qname("s"))
    body.setdefault("queue", s.qname())
    return s.call("POST", "/v1/schedules", body, 201)


def sched(s, sid):
    return s.call("GET", f"/v1/schedules/{sid}")


def waiting(s, q):
    st, body = s.get(f"/v1/queues/{q}")
    return body["counts"]["waiting"] if st == 200 else 0


def test_create_get_list_patch_delete(srv):
    q = srv.qname()
    t0 = now_ms()
    a = mk(srv, queue=q, cron="0 3 * * *", tz="Europe/Berlin",
           job={"data": {"report": "nightly"}, "priority": "high"})
    assert a["name"].startswith("s-") and a["queue"] == q and a["tz"] == "Europe/Berlin"
    assert a["runs"] == 0 and a["last_run_at"] is None and a["skipped"] == 0
    assert a["next_run_at"] > t0 and a["overlap"] is True and a["paused"] is False
    assert a["job"] == {"data": {"report": "nightly"}, "priority": "high"}
    assert sched(srv, a["id"]) == a
    assert sched(srv, a["name"])["id"] == a["id"]
    names = [x["name"] for x in srv.call("GET", "/v1/schedules")["schedules"]]
    assert a["name"] in names
    assert [x["id"] for x in srv.call("GET", f"/v1/schedules?queue={q}")["schedules"]] == [a["id"]]
    # patch: every_ms replaces cron (and its tz); the next fire follows
    b = srv.call("PATCH", f"/v1/schedules/{a['id']}", {"every_ms": 60000, "limit": 5})
    assert "cron" not in b and "tz" not in b and b["every_ms"] == 60000 and b["limit"] == 5
    assert b["next_run_at"] <= now_ms() + 60000
    b = srv.call("PATCH", f"/v1/schedules/{a['id']}", {"limit": None})
    assert b["limit"] is None
    # a second schedule with the same name
    assert_error(srv.request("POST", "/v1/schedules",
                             {"name": a["name"], "queue": q, "every_ms": 1000}), 409, "conflict")
    assert srv.request("DELETE", f"/v1/schedules/{a['id']}").status == 204
    assert_error(srv.request("GET", f"/v1/schedules/{a['id']}"), 404, "not_found")
    assert_error(srv.request("POST", f"/v1/schedules/{a['name']}/trigger"), 404, "not_found")


@pytest.mark.parametrize("body,field", [
    ({"queue": "q", "cron": "* * * * *"}, "name"),
    ({"name": "x", "cron": "* * * * *"}, "queue"),
    ({"name": "x", "queue": "q"}, "cron"),
    ({"name": "x", "queue": "q", "cron": "* * * *"}, "cron"),
    ({"name": "x", "queue": "q", "cron": "0 0 30 2 *"}, "cron"),
    ({"name": "x", "queue": "q", "cron": "61 * * * *"}, "cron"),
    ({"name": "x", "queue": "q", "cron": "* * * * * * *"}, "cron"),
    ({"name": "x", "queue": "q", "cron": "@reboot"}, "cron"),
    ({"name": "x", "queue": "q", "cron": "* * * * *", "every_ms": 1000}, "every_ms"),
    ({"name": "x", "queue": "q", "every_ms": 5}, "every_ms"),
    ({"name": "x", "queue": "q", "cron": "* * * * *", "tz": "Moon/Tranquility"}, "tz"),
    ({"name": "x", "queue": "q", "cron": "* * * * *", "tz": 5}, "tz"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "job": {"id": "fixed"}}, "job.id"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "job": {"priority": 5000}}, "job.priority"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "job": {"bogus": 1}}, "job.bogus"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "limit": -1}, "limit"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "start_at": "soon"}, "start_at"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "overlap": "no"}, "overlap"),
    ({"name": "x", "queue": "q", "every_ms": 1000, "when": "now"}, "when"),
])
def test_bad_definitions_are_400_naming_the_field(srv, body, field):
    r = srv.request("POST", "/v1/schedules", body)
    assert_error(r, 400, "invalid_argument", field=field)
    assert srv.request("GET", "/v1/schedules/x").status == 404


def test_bad_patch_changes_nothing(srv):
    a = mk(srv, cron="*/5 * * * *")
    r = srv.request("PATCH", f"/v1/schedules/{a['id']}", {"cron": "*/5 * * * * * *"})
    assert_error(r, 400, "invalid_argument", field="cron")
    assert sched(srv, a["id"])["cron"] == "*/5 * * * *"
    assert_error(srv.request("POST", "/v1/schedules", "{"), 400, "invalid_json")


def test_every_ms_fires_jobs_from_the_template(srv):
    q = srv.qname()
    a = mk(srv, queue=q, every_ms=200, job={"data": {"n": 1}, "tags": {"k": "v"}})
    wait_until(lambda: sched(srv, a["id"])["runs"] >= 3, timeout=10, what="three runs")
    job = srv.fetch_until(q)
    assert job["data"] == {"n": 1} and job["tags"] == {"k": "v"}
    b = sched(srv, a["id"])
    assert b["last_job"] and b["last_run_at"] >= a["created_at"]
    assert waiting(srv, q) + 1 >= 3


def test_six_field_cron_fires_every_second(srv):
    q = srv.qname()
    a = mk(srv, queue=q, cron="* * * * * *", limit=2)
    assert a["next_run_at"] % 1000 == 0
    b = wait_until(lambda: (lambda x: x if x["runs"] == 2 else None)(sched(srv, a["id"])),
                   timeout=10, what="two runs")
    assert b["next_run_at"] is None
    assert waiting(srv, q) == 2


def test_overlap_false_skips_while_the_job_lives(srv):
    q = srv.qname()
    a = mk(srv, queue=q, every_ms=200, overlap=False)
    wait_until(lambda: sched(srv, a["id"])["skipped"] >= 2, timeout=10, what="two skips")
    b = sched(srv, a["id"])
    assert b["runs"] == 1 and waiting(srv, q) == 1
    srv.complete(srv.fetch_one(q))
    wait_until(lambda: sched(srv, a["id"])["runs"] == 2, timeout=10, what="a second run")


def test_pause_resume_and_trigger(srv):
    q = srv.qname()
    a = mk(srv, queue=q, cron="0 0 1 1 *", paused=True, job={"data": "manual"})
    assert a["paused"] is True and a["next_run_at"] is None
    job = srv.call("POST", f"/v1/schedules/{a['name']}/trigger", None, 201)
    assert job["queue"] == q and job["data"] == "manual" and job["state"] == "waiting"
    b = sched(srv, a["id"])
    assert b["runs"] == 1 and b["last_job"] == job["id"] and b["next_run_at"] is None
    b = srv.call("POST", f"/v1/schedules/{a['id']}/resume")
    assert b["paused"] is False and b["next_run_at"] > now_ms()
    b = srv.call("POST", f"/v1/schedules/{a['id']}/pause")
    assert b["paused"] is True and b["next_run_at"] is None
    # a trigger into a draining queue (it still holds the triggered job) is refused and
    # leaves no trace
    assert srv.call("POST", f"/v1/queues/{q}/drain")["status"] == "draining"
    assert_error(srv.request("POST", f"/v1/schedules/{a['id']}/trigger"), 409, "queue_draining")
    assert sched(srv, a["id"])["runs"] == 1


def test_schedules_survive_kill9_and_a_missed_fire_runs_once(server):
    s = server
    q = s.qname()
    every = 2000
    nightly = mk(s, queue=q, cron="30 2 * * *", tz="America/New_York", job={"data": "n"})
    fast = mk(s, queue=q, every_ms=every, job={"data": "f"})
    wait_until(lambda: sched(s, fast["id"])["runs"] >= 1, timeout=10, what="a first run")
    before = sched(s, fast["id"])
    s.kill9()
    # down until two fires of `fast` have passed (the next one and the one after it)
    up_at = before["next_run_at"] + every + 100
    time.sleep(max(0.0, (up_at - now_ms()) / 1000))
    s.restart()
    # The schedule may fire again on time soon after the made-up run (a slow restart leaves
    # little room), so the runs are read off its jobs: one made-up run at start, then runs
    # back on the schedule's phase (creation + k * every_ms), never a second made-up one.
    wait_until(lambda: sched(s, fast["id"])["runs"] >= before["runs"] + 2, timeout=15,
               what="the schedule firing again after the restart")
    after = sched(s, fast["id"])
    jobs = s.call("GET", f"/v1/jobs?queue={q}&limit=100")["jobs"]
    made = sorted(j["created_at"] for j in jobs if j["created_at"] > before["last_run_at"])
    assert len(made) == after["runs"] - before["runs"], (before, after, made)
    assert len(jobs) == after["runs"]
    assert made[0] >= up_at, "the made-up run comes after the downtime"
    late = [(t - fast["created_at"]) % every for t in made[1:]]
    assert all(x < 500 for x in late), (fast["created_at"], made, late)
    assert after["next_run_at"] > after["last_run_at"] > before["last_run_at"]
    n2 = sched(s, nightly["id"])
    assert n2 == nightly


def test_cli_schedule_commands(srv):
    import json
    import os
    import subprocess
    from conftest import REPO
    jobq = os.environ.get("JOBQ") or str(REPO / "build" / "jobq")
    q = srv.qname()
    name = srv.qname("cli")

    def run(*args):
        p = subprocess.run([jobq, "--url", srv.url, "schedule", *args], capture_output=True,
                           text=True, timeout=20)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = run("add", name, "--queue", q, "--cron", "0 6 * * mon-fri", "--tz",
                       "America/New_York", "--data", '{"k": [1, 2]}', "--priority", "high",
                       "--limit", "3", "--no-overlap")
    assert rc == 0, err
    made = json.loads(out)
    got = sched(srv, name)  # checked through the API, not the CLI
    assert got["id"] == made["id"] and got["cron"] == "0 6 * * mon-fri"
    assert got["tz"] == "America/New_York" and got["limit"] == 3 and got["overlap"] is False
    assert got["job"] == {"data": {"k": [1, 2]}, "priority": "high"}
    rc, out, _ = run("list", "--queue", q)
    assert rc == 0 and [x["name"] for x in json.loads(out)["schedules"]] == [name]
    rc, out, _ = run("trigger", name)
    assert rc == 0 and json.loads(out)["data"] == {"k": [1, 2]}
    assert waiting(srv, q) == 1
    assert run("pause", name)[0] == 0 and sched(srv, name)["paused"] is True
    assert run("resume", name)[0] == 0 and sched(srv, name)["paused"] is False
    assert run("update", name, "--every", "60000")[0] == 0
    assert sched(srv, name)["every_ms"] == 60000
    # update changes only what its options give: --data keeps the template's priority
    assert run("update", name, "--data", '{"k": 3}', "--job", '{"max_attempts": 5}')[0] == 0
    assert sched(srv, name)["job"] == {"data": {"k": 3}, "priority": "high", "max_attempts": 5}
    assert run("update", srv.qname("none"), "--data", "1")[0] == 1
    rc, _, err = run("add", srv.qname("bad"), "--queue", q, "--cron", "0 25 * * *")
    assert rc == 1 and "hour" in err
    assert run("add")[0] == 2
    assert run("rm", name)[0] == 0
    assert srv.request("GET", f"/v1/schedules/{made['id']}").status == 404
    assert run("get", name)[0] == 1
