"""Orchestration: dependencies, flows, review gates, pipelines, dedup and the result cache.

The dubbing pipeline of the seed (STT → MT → TTS → mux → lip-sync for premium runs, review
after STT and MT) runs end to end with workers played by the test: each fetches, checks what
its stage was handed in `parents`, and completes with a result.
"""

import concurrent.futures
import json
import os
import subprocess
import threading
import time
from pathlib import Path

from conftest import assert_error, wait_until


def work(s, q, result, expect_parents=None):
    """Fetch one job from q (polling), check its parents' results, complete it."""
    j = s.fetch_until(q)
    if expect_parents is not None:
        assert j.get("parents") == expect_parents, j
    s.complete(j, result)
    return j


def flow(s, fid):
    return s.call("GET", f"/v1/flows/{fid}")


def dubbing_template(s, name):
    qs = {st: s.qname(st) for st in ("stt", "mt", "tts", "mux", "lipsync")}
    body = {"name": name, "stages": [
        {"name": "stt", "queue": qs["stt"], "review": True},
        {"name": "mt", "queue": qs["mt"], "review": True},
        {"name": "tts", "queue": qs["tts"], "max_attempts": 2},
        {"name": "mux", "queue": qs["mux"]},
        {"name": "lipsync", "queue": qs["lipsync"], "when": "premium"},
    ]}
    out = s.call("POST", "/v1/pipelines", body, 201)
    assert out["name"] == name
    return qs


def run_dubbing(s, qs, name, project, premium):
    f = s.call("POST", f"/v1/pipelines/{name}/runs",
               {"project": project, "data": {"video": f"{project}.mp4"},
                "flags": {"premium": premium}}, 201)
    assert f["name"] == name and f["project"] == project and f["state"] == "running"
    assert f["current"] == ["stt"]
    # STT runs and waits for review: MT must not be handed out meanwhile
    stt = work(s, qs["stt"], {"transcript": "hola v1"}, expect_parents=None)
    assert stt["data"] == {"video": f"{project}.mp4"} and stt["ref"] == "stt"
    assert s.state(stt["id"]) == "review"
    assert flow(s, f["id"])["state"] == "review"
    assert s.fetch(qs["mt"]) == []
    # rejected with notes and re-run: the next attempt sees why
    s.call("POST", f"/v1/jobs/{stt['id']}/reject",
           {"reason": "speaker 2 missing", "notes": {"at_s": 12}, "rerun": True})
    again = s.fetch_until(qs["stt"])
    assert again["id"] == stt["id"]
    fb = again["review_feedback"]
    assert fb["reason"] == "speaker 2 missing" and fb["notes"] == {"at_s": 12}
    assert fb["result"] == {"transcript": "hola v1"}
    s.complete(again, {"transcript": "hola v2"})
    assert s.state(stt["id"]) == "review"
    # approved with a corrected result: that is what MT gets
    s.call("POST", f"/v1/jobs/{stt['id']}/approve", {"result": {"transcript": "hola v3"}})
    assert s.state(stt["id"]) == "completed"
    mt = work(s, qs["mt"], {"text": "hello"},
              expect_parents={"stt": {"transcript": "hola v3"}})
    s.call("POST", f"/v1/jobs/{mt['id']}/approve", {})
    work(s, qs["tts"], {"audio": "a.wav"}, expect_parents={"mt": {"text": "hello"}})
    mux = work(s, qs["mux"], {"video": "out.mp4"}, expect_parents={"tts": {"audio": "a.wav"}})
    if premium:
        assert flow(s, f["id"])["state"] == "running"
        work(s, qs["lipsync"], {"video": "synced.mp4"},
             expect_parents={"mux": {"video": "out.mp4"}})
    done = flow(s, f["id"])
    assert done["state"] == "completed", done
    assert done["finished_at"] is not None
    assert done["skipped"] == ([] if premium else ["lipsync"])
    assert set(done["jobs"]) == ({"stt", "mt", "tts", "mux", "lipsync"} if premium
                                 else {"stt", "mt", "tts", "mux"})
    last = "lipsync" if premium else "mux"
    assert done["stages"][last]["state"] == "completed"
    assert s.fetch(qs["lipsync"]) == []
    return done, mux


def test_dubbing_pipeline_premium_and_not(srv):
    s = srv
    name = s.qname("dubbing")
    qs = dubbing_template(s, name)
    assert s.call("GET", f"/v1/pipelines/{name}")["stages"][4]["when"] == "premium"
    premium, _ = run_dubbing(s, qs, name, s.qname("proj"), True)
    plain, _ = run_dubbing(s, qs, name, s.qname("proj"), False)
    assert premium["id"] != plain["id"]
    listed = s.call("GET", f"/v1/flows?project={plain['project']}")["flows"]
    assert [f["id"] for f in listed] == [plain["id"]]
    # jobs carry the run's project and the stage as tags
    jobs = s.list_jobs(project=plain["project"])["jobs"]
    assert {j["tags"]["stage"] for j in jobs} == {"stt", "mt", "tts", "mux"}


def test_pipeline_validation_and_crud(srv):
    s = srv
    name = s.qname("p")
    bad = [
        ({"name": name, "stages": []}, "stages"),
        ({"name": name, "stages": [{"name": "a"}]}, "stages[0].queue"),
        ({"name": name, "stages": [{"name": "a", "queue": "x", "after": ["b"]},
                                   {"name": "b", "queue": "x"}]}, "stages[0].after"),
        ({"name": name, "stages": [{"name": "a", "queue": "x"},
                                   {"name": "a", "queue": "x"}]}, "stages[1].name"),
        ({"name": name, "stages": [{"name": "a", "queue": "x", "priority": 5000}]},
         "stages[0].priority"),
        ({"name": name, "stages": [{"name": "a", "queue": "x", "bogus": 1}]}, "stages[0].bogus"),
        ({"name": name, "stages": [{"name": "a", "queue": "x", "on_parent_failure": "cancel"}]},
         "stages[0].on_parent_failure"),
        ({"stages": [{"name": "a", "queue": "x"}]}, "name"),
    ]
    for body, field in bad:
        assert_error(s.request("POST", "/v1/pipelines", body), 400, "invalid_argument", field)
    t = {"name": name, "stages": [{"name": "a", "queue": s.qname()}]}
    s.call("POST", "/v1/pipelines", t, 201)
    assert_error(s.request("POST", "/v1/pipelines", t), 409, "conflict")
    t["description"] = "v2"
    assert s.call("POST", "/v1/pipelines?replace=true", t, 201)["description"] == "v2"
    assert name in [p["name"] for p in s.call("GET", "/v1/pipelines")["pipelines"]]
    assert_error(s.request("POST", f"/v1/pipelines/{name}/runs", {"flags": {"x": 1}}), 400,
                 "invalid_argument", "flags")
    s.call("DELETE", f"/v1/pipelines/{name}", expect=204)
    assert_error(s.request("GET", f"/v1/pipelines/{name}"), 404, "not_found")
    assert_error(s.request("POST", f"/v1/pipelines/{name}/runs", {}), 404, "not_found")


def test_pipelines_are_bounded(server):
    s = server
    q = s.qname()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # one commit for many
        list(pool.map(lambda i: s.call("POST", "/v1/pipelines", {
            "name": f"p{i}", "stages": [{"name": "a", "queue": q}]}, 201), range(1000)))
    extra = {"name": "one-more", "stages": [{"name": "a", "queue": q}]}
    assert_error(s.request("POST", "/v1/pipelines", extra), 409, "conflict", None)
    # replacing one is no new one; after a delete there is room again
    s.call("POST", "/v1/pipelines?replace=true", {"name": "p0", "stages": [{"name": "b",
                                                                             "queue": q}]}, 201)
    s.call("DELETE", "/v1/pipelines/p1", expect=204)
    s.call("POST", "/v1/pipelines", extra, 201)


def diamond(s, policy):
    qa, qb, qd = s.qname("a"), s.qname("b"), s.qname("d")
    body = {"name": "diamond", "jobs": [
        {"ref": "a", "queue": qa, "data": {"n": 1}},
        {"ref": "b", "queue": qb, "depends_on": ["a"], "max_attempts": 1},
        {"ref": "c", "queue": qb, "depends_on": ["a"]},
        {"ref": "d", "queue": qd, "depends_on": ["b", "c"]},
    ]}
    if policy:
        body["on_parent_failure"] = policy
    f = s.call("POST", "/v1/flows", body, 201)
    assert set(f["jobs"]) == {"a", "b", "c", "d"}
    assert f["stages"]["d"]["state"] == "blocked"
    return f, qa, qb, qd


def test_diamond_flow_completes_with_both_parents(srv):
    s = srv
    f, qa, qb, qd = diamond(s, None)
    work(s, qa, {"a": 1})
    b, c = s.fetch_until(qb), None
    c = s.fetch_until(qb)
    assert {b["ref"], c["ref"]} == {"b", "c"}
    assert b["parents"] == {"a": {"a": 1}}
    s.complete(b, {"from": b["ref"]})
    assert s.fetch(qd) == []  # one parent still running
    s.complete(c, {"from": c["ref"]})
    d = s.fetch_until(qd)
    assert d["parents"] == {"b": {"from": "b"}, "c": {"from": "c"}}
    assert sorted(d["depends_on"]) == sorted([f["jobs"]["b"], f["jobs"]["c"]])
    s.complete(d, {"ok": True})
    assert flow(s, f["id"])["state"] == "completed"


def test_diamond_failure_cancels_dependants(srv):
    s = srv
    f, qa, qb, qd = diamond(s, "cancel")
    work(s, qa, 1)
    jobs = {j["ref"]: j for j in [s.fetch_until(qb), s.fetch_until(qb)]}
    s.fail(jobs["b"], "broken", retryable=False)
    d = s.job(f["jobs"]["d"])
    assert d["state"] == "cancelled" and d["error"]["type"] == "parent_failed"
    assert flow(s, f["id"])["state"] == "running"  # c still runs
    s.complete(jobs["c"], 2)
    g = flow(s, f["id"])
    assert g["state"] == "failed" and g["counts"]["failed"] == 1 and g["counts"]["cancelled"] == 1


def test_diamond_failure_continue(srv):
    s = srv
    f, qa, qb, qd = diamond(s, "continue")
    work(s, qa, 1)
    jobs = {j["ref"]: j for j in [s.fetch_until(qb), s.fetch_until(qb)]}
    s.fail(jobs["b"], "broken", retryable=False)
    assert s.state(f["jobs"]["d"]) == "blocked"
    s.complete(jobs["c"], 2)
    d = s.fetch_until(qd)
    assert d["parents"] == {"b": None, "c": 2}
    s.complete(d)
    assert flow(s, f["id"])["state"] == "failed"  # it finished, with a failure in it


def test_flow_validation(srv):
    s = srv
    q = s.qname()
    cases = [
        ([{"ref": "a", "queue": q, "depends_on": ["b"]}, {"ref": "b", "queue": q,
                                                          "depends_on": ["a"]}], "a", "cycle"),
        ([{"ref": "a", "queue": q, "depends_on": ["a"]}], "a", "cycle"),
        ([{"ref": "a", "queue": q, "depends_on": ["nope"]}], "nope", "unknown"),
        ([{"ref": "a", "queue": q}, {"ref": "a", "queue": q}], "a", "duplicate"),
    ]
    for jobs, ref, word in cases:
        err = assert_error(s.request("POST", "/v1/flows", {"jobs": jobs}), 400, "invalid_argument")
        assert err["details"]["ref"] == ref and word in err["message"], err
    assert_error(s.request("POST", "/v1/flows", {"jobs": [{"queue": q}]}), 400,
                 "invalid_argument", "jobs[0].ref")
    assert_error(s.request("POST", "/v1/flows", {"jobs": [{"ref": "a", "queue": q, "x": 1}]}),
                 400, "invalid_argument", "jobs[0].x")
    assert_error(s.request("POST", "/v1/flows", {"jobs": []}), 400, "invalid_argument", "jobs")
    assert_error(s.request("POST", "/v1/flows", {"jobs": [{"ref": "a", "queue": q,
                                                           "on_parent_failure": "continue"}]}),
                 400, "invalid_argument", "jobs[0].on_parent_failure")
    assert_error(s.request("POST", "/v1/flows", {"jobs": [{"ref": "a", "queue": q}],
                                                 "on_parent_failure": "maybe"}),
                 400, "invalid_argument", "on_parent_failure")
    # nothing of a refused flow was made
    assert_error(s.request("GET", f"/v1/queues/{q}"), 404, "not_found")
    assert_error(s.request("GET", "/v1/flows/nope"), 404, "not_found")


def test_depends_on_plain_enqueue(srv):
    s = srv
    q, q2 = s.qname(), s.qname()
    p1 = s.enqueue(q, {"p": 1})
    p2 = s.enqueue(q, {"p": 2})
    child = s.enqueue(q2, {"c": 1}, depends_on=[p1["id"], p2["id"]])
    assert child["state"] == "blocked" and child["depends_on"] == [p1["id"], p2["id"]]
    assert_error(s.request("POST", f"/v1/queues/{q2}/jobs", {"depends_on": ["no-such-job"]}),
                 400, "invalid_argument", "depends_on")
    a, b = s.fetch_until(q), s.fetch_until(q)
    s.complete(a, "ra")
    assert s.state(child["id"]) == "blocked"
    s.complete(b, "rb")
    c = s.fetch_until(q2)
    assert c["parents"] == {p1["id"]: "ra", p2["id"]: "rb"}
    s.complete(c)
    # a parent that already completed is satisfied at once; a failed one cancels
    late = s.enqueue(q2, None, depends_on=[p1["id"]])
    assert late["state"] == "waiting"
    bad = s.enqueue(q, None)
    j = s.fetch_until(q)
    assert j["id"] == bad["id"]
    s.fail(j, "x", retryable=False)
    dep = s.enqueue(q2, None, depends_on=[bad["id"]])
    assert dep["state"] == "cancelled" and dep["error"]["type"] == "parent_failed"
    cont = s.enqueue(q2, None, depends_on=[bad["id"]], on_parent_failure="continue")
    assert cont["state"] == "waiting"


def test_cancelled_child_removed_before_its_parent_ends(srv):
    s = srv
    q, q2 = s.qname(), s.qname()
    p = s.enqueue(q, None)
    gone = s.enqueue(q2, None, depends_on=[p["id"]])
    again = s.enqueue(q2, None, depends_on=[p["id"]])
    s.call("POST", f"/v1/jobs/{gone['id']}/cancel", {})
    assert s.request("DELETE", f"/v1/jobs/{gone['id']}").status == 204
    s.call("POST", f"/v1/jobs/{again['id']}/cancel", {})
    assert s.call("POST", f"/v1/jobs/{again['id']}/retry", {})["state"] == "blocked"
    s.complete(s.fetch_until(q), "r")
    assert s.state(p["id"]) == "completed"
    j = s.fetch_until(q2)
    assert j["id"] == again["id"] and j["parents"] == {p["id"]: "r"}
    assert s.fetch(q2) == []  # the retried child was linked once


def test_review_reject_without_rerun_fails_and_cancels_children(srv):
    s = srv
    q, q2 = s.qname(), s.qname()
    f = s.call("POST", "/v1/flows", {"jobs": [{"ref": "r", "queue": q, "review": True},
                                              {"ref": "n", "queue": q2, "depends_on": ["r"]}]},
               201)
    j = s.fetch_until(q)
    assert j["review"] is True
    s.complete(j, {"v": 1})
    assert_error(s.request("POST", f"/v1/jobs/{j['id']}/reject", {}), 400, "invalid_argument",
                 "reason")
    s.call("POST", f"/v1/jobs/{j['id']}/reject", {"reason": "wrong language"})
    r = s.job(j["id"])
    assert r["state"] == "failed" and r["error"]["type"] == "rejected"
    assert r["error"]["message"] == "wrong language"
    assert s.state(f["jobs"]["n"]) == "cancelled"
    assert flow(s, f["id"])["state"] == "failed"
    assert_error(s.request("POST", f"/v1/jobs/{j['id']}/approve", {}), 409, "invalid_state")


def test_result_wait_through_review(srv):
    s = srv
    q = s.qname()
    jid = s.enqueue(q, None, review=True)["id"]
    got = {}

    def waiter():
        got["r"] = s.call("GET", f"/v1/jobs/{jid}/result?wait_ms=8000", timeout=15)

    t = threading.Thread(target=waiter)
    t.start()
    j = s.fetch_until(q)
    s.complete(j, {"draft": 1})
    time.sleep(0.2)  # the wait must not be answered by the review state
    assert "r" not in got
    s.call("POST", f"/v1/jobs/{jid}/approve", {})
    t.join(15)
    assert got["r"]["state"] == "completed" and got["r"]["result"] == {"draft": 1}


def test_unique_key_dedup(srv):
    s = srv
    q = s.qname()
    first = s.call("POST", f"/v1/queues/{q}/jobs", {"data": 1, "unique_key": "video-42"}, 201)
    r = s.request("POST", f"/v1/queues/{q}/jobs", {"data": 2, "unique_key": "video-42"})
    assert r.status == 200 and r.json["id"] == first["id"] and r.json["deduplicated"] is True
    bulk = s.enqueue_bulk(q, [{"unique_key": "video-42"}, {"unique_key": "k2"},
                              {"unique_key": "k2"}])
    assert bulk[0]["id"] == first["id"] and bulk[0]["deduplicated"]
    assert bulk[2]["id"] == bulk[1]["id"] and bulk[2]["deduplicated"]
    assert "deduplicated" not in bulk[1]
    # another queue has its own keys
    other = s.enqueue(s.qname(), None, unique_key="video-42")
    assert other["id"] != first["id"]
    # the key frees when the job ends
    j = s.fetch_until(q)
    assert j["id"] == first["id"]
    s.complete(j)
    again = s.call("POST", f"/v1/queues/{q}/jobs", {"unique_key": "video-42"}, 201)
    assert again["id"] != first["id"]


def test_result_cache(srv):
    s = srv
    q = s.qname()
    first = s.enqueue(q, {"in": 1}, cache={"key": "tts:abc", "ttl_ms": 60000})
    j = s.fetch_until(q)
    s.complete(j, {"audio": "x.wav"})
    hit = s.enqueue(q, {"in": 1}, cache={"key": "tts:abc", "ttl_ms": 60000})
    assert hit["id"] != first["id"]
    assert hit["state"] == "completed" and hit["cached"] is True
    assert hit["result"] == {"audio": "x.wav"}
    assert s.fetch(q) == []  # nothing to run
    # a ttl shorter than the entry's age misses
    time.sleep(0.05)
    miss = s.enqueue(q, {"in": 1}, cache={"key": "tts:abc", "ttl_ms": 1})
    assert miss["state"] == "waiting" and "cached" not in miss
    assert_error(s.request("POST", f"/v1/queues/{q}/jobs", {"cache": {"ttl_ms": 5}}), 400,
                 "invalid_argument", "cache.key")


def test_flow_cancel(srv):
    s = srv
    q, q2 = s.qname(), s.qname()
    f = s.call("POST", "/v1/flows", {"on_parent_failure": "continue", "jobs": [
        {"ref": "a", "queue": q}, {"ref": "b", "queue": q2, "depends_on": ["a"]},
        {"ref": "c", "queue": q2}]}, 201)
    a = s.fetch_until(q)
    out = s.call("POST", f"/v1/flows/{f['id']}/cancel", {})
    assert out["stages"]["b"]["state"] == "cancelled"
    assert out["stages"]["c"]["state"] == "cancelled"
    assert s.job(a["id"])["cancel_requested"] is True
    assert flow(s, f["id"])["state"] == "running"  # a still runs
    s.complete(a, 1)
    assert s.state(a["id"]) == "cancelled"
    assert flow(s, f["id"])["state"] == "cancelled"
    assert s.fetch(q2) == []
    assert_error(s.request("POST", f"/v1/flows/{f['id']}/cancel", {}), 409, "invalid_state")


def test_restart_mid_flow_keeps_it_consistent(server):
    s = server
    name = s.qname("dub")
    qs = dubbing_template(s, name)
    f = s.call("POST", f"/v1/pipelines/{name}/runs",
               {"project": "p", "data": {"v": 1}, "flags": {"premium": True}}, 201)
    stt = work(s, qs["stt"], {"t": 1})
    s.call("POST", f"/v1/jobs/{stt['id']}/reject", {"reason": "redo", "rerun": True})
    stt = work(s, qs["stt"], {"t": 2})
    s.call("POST", f"/v1/jobs/{stt['id']}/approve", {})
    mt = s.fetch_until(qs["mt"])  # active when the server dies
    d = s.enqueue(s.qname(), None, depends_on=[f["jobs"]["mux"]])
    cached = s.enqueue(qs["tts"], None, cache={"key": "k", "ttl_ms": 3600000})
    s.kill9()
    s.start()
    g = flow(s, f["id"])
    assert g["state"] == "running" and g["stages"]["mt"]["state"] == "waiting"
    assert g["stages"]["tts"]["state"] == "blocked"
    assert s.call("GET", f"/v1/pipelines/{name}")["name"] == name
    # the old lease is dead; the stage runs again and the chain goes on, feedback kept
    assert s.job(stt["id"])["review_feedback"]["reason"] == "redo"
    mt = work(s, qs["mt"], {"text": "t"}, expect_parents={"stt": {"t": 2}})
    assert s.state(mt["id"]) == "review"
    s.kill9()
    s.start()
    assert flow(s, f["id"])["state"] == "review"
    s.call("POST", f"/v1/jobs/{mt['id']}/approve", {})
    # the flow's tts (older, so first in FIFO order) and the plain job with a cache key
    t = s.fetch_until(qs["tts"])
    assert t["ref"] == "tts" and t["parents"] == {"mt": {"text": "t"}}
    c = s.fetch_until(qs["tts"])
    assert c["id"] == cached["id"]
    s.complete(c, {"cached": "yes"})
    s.complete(t, {"a": 1})
    s.kill9()
    s.start()
    # the cache, the unique keys and the child lists come back from the jobs
    hit = s.enqueue(qs["tts"], None, cache={"key": "k", "ttl_ms": 3600000})
    assert hit["state"] == "completed" and hit["result"] == {"cached": "yes"}
    assert s.state(d["id"]) == "blocked"
    work(s, qs["mux"], {"m": 1})
    assert s.state(d["id"]) == "waiting"
    work(s, qs["lipsync"], {"l": 1}, expect_parents={"mux": {"m": 1}})
    assert flow(s, f["id"])["state"] == "completed"
    s.kill9()
    s.start()
    assert flow(s, f["id"])["state"] == "completed"


def cli(s, *args, expect=0, stdin=None):
    """Runs `jobq --url … ARGS`; returns its stdout parsed as JSON (None when empty)."""
    exe = os.environ.get("JOBQ") or str(Path(__file__).resolve().parents[2] / "build" / "jobq")
    p = subprocess.run([exe, "--url", s.url, *args], input=stdin, capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout) if p.stdout.strip() else None


def test_cli_pipeline_review_and_flows(srv, tmp_path):
    s = srv
    name = s.qname("clidub")
    q1, q2 = s.qname("stt"), s.qname("lip")
    tpl = tmp_path / "tpl.json"
    tpl.write_text('{"name": "%s", "stages": [{"name": "stt", "queue": "%s", "review": true},'
                   '{"name": "lipsync", "queue": "%s", "when": "premium"}]}' % (name, q1, q2))
    assert cli(s, "pipeline", "create", f"@{tpl}")["name"] == name
    cli(s, "pipeline", "create", f"@{tpl}", expect=1)  # exists
    assert cli(s, "pipeline", "create", "--replace", f"@{tpl}")["name"] == name
    assert name in [p["name"] for p in cli(s, "pipeline", "list")["pipelines"]]
    assert cli(s, "pipeline", "get", name)["stages"][1]["when"] == "premium"
    run = cli(s, "pipeline", "run", name, "--project", "cli-p", "--data", '{"v": 1}',
              "--flag", "premium")
    assert set(run["jobs"]) == {"stt", "lipsync"} and run["skipped"] == []
    j = s.fetch_until(q1)
    s.complete(j, {"t": 1})
    cli(s, "reject", j["id"], expect=2)  # --reason is required
    out = cli(s, "reject", j["id"], "--reason", "typo", "--notes", "fix line 3", "--rerun")
    assert out["state"] == "waiting" and out["review_feedback"]["notes"] == "fix line 3"
    j = s.fetch_until(q1)
    s.complete(j, {"t": 2})
    assert cli(s, "approve", j["id"], "--result", '{"t": 3}')["result"] == {"t": 3}
    lip = s.fetch_until(q2)
    assert lip["parents"] == {"stt": {"t": 3}}
    assert cli(s, "flow", "get", run["id"])["state"] == "running"
    assert [f["id"] for f in cli(s, "flow", "list", "--project", "cli-p")["flows"]] == [run["id"]]
    assert cli(s, "flow", "cancel", run["id"])["id"] == run["id"]
    s.complete(lip, 1)
    assert cli(s, "flow", "get", run["id"])["state"] == "cancelled"
    # a flow from stdin, then the template removed
    f = cli(s, "flow", "create", "-",
            stdin='{"jobs": [{"ref": "x", "queue": "%s"}]}' % s.qname())
    assert list(f["jobs"]) == ["x"]
    cli(s, "flow", "create", '{"jobs": [{"ref": "x", "queue": "q", "depends_on": ["x"]}]}',
        expect=1)
    cli(s, "pipeline", "rm", name, expect=0)
    cli(s, "pipeline", "get", name, expect=1)


def test_flow_wait_until_it_ends(srv):
    s = srv
    q = s.qname()
    f = s.call("POST", "/v1/flows", {"jobs": [{"ref": "a", "queue": q, "review": True},
                                              {"ref": "b", "queue": q, "depends_on": ["a"]}]},
               201)
    # a wait that runs out answers the flow as it is
    assert s.call("GET", f"/v1/flows/{f['id']}?wait_ms=50")["state"] == "running"
    got = {}

    def waiter():
        got["f"] = s.call("GET", f"/v1/flows/{f['id']}?wait_ms=8000", timeout=15)

    t = threading.Thread(target=waiter)
    t.start()
    a = s.fetch_until(q)
    s.complete(a, {"v": 1})
    s.call("POST", f"/v1/jobs/{a['id']}/approve", {})
    b = s.fetch_until(q)
    assert "f" not in got  # b still runs
    s.complete(b, {"v": 2})
    t.join(15)
    assert got["f"]["state"] == "completed"
    assert got["f"]["stages"]["b"]["result"] == {"v": 2}
    # an ended flow answers at once; a cancel ends a waited-on flow too
    assert s.call("GET", f"/v1/flows/{f['id']}?wait_ms=8000")["state"] == "completed"
    g = s.call("POST", "/v1/flows", {"jobs": [{"ref": "x", "queue": s.qname()}]}, 201)
    t = threading.Thread(target=lambda: got.update(
        g=s.call("GET", f"/v1/flows/{g['id']}?wait_ms=8000", timeout=15)))
    t.start()
    time.sleep(0.1)
    s.call("POST", f"/v1/flows/{g['id']}/cancel", {})
    t.join(15)
    assert got["g"]["state"] == "cancelled"


def test_many_waiters_each_answered_by_its_own_end(srv):
    s = srv
    q = s.qname()
    one, two, gone = (s.enqueue(q, {"n": n})["id"] for n in (1, 2, 3))
    f = s.call("POST", "/v1/flows", {"jobs": [{"ref": "a", "queue": q}]}, 201)
    got = {}

    def wait(key, path):
        got[key] = s.request("GET", path, timeout=40)

    waits = {"one-a": f"/v1/jobs/{one}/result?wait_ms=30000",
             "one-b": f"/v1/jobs/{one}/result?wait_ms=30000",
             "two": f"/v1/jobs/{two}/result?wait_ms=30000",
             "gone": f"/v1/jobs/{gone}/result?wait_ms=30000",
             "flow": f"/v1/flows/{f['id']}?wait_ms=30000",
             "short": f"/v1/jobs/{two}/result?wait_ms=100"}
    threads = [threading.Thread(target=wait, args=kv) for kv in waits.items()]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let them park (the answers below hold either way)
    assert s.request("DELETE", f"/v1/jobs/{gone}").status == 204
    by_n = {}
    for _ in range(3):
        j = s.fetch_until(q)
        by_n[json.dumps(j["data"])] = j
    s.complete(by_n['{"n": 1}'], "r1")
    s.complete(by_n["null"], "ra")
    s.complete(by_n['{"n": 2}'], "r2")
    for t in threads:  # each is answered by its job's end, long before its wait runs out
        t.join(15)
        assert not t.is_alive()
    assert got["one-a"].json["result"] == "r1" and got["one-b"].json["result"] == "r1"
    assert got["two"].json["result"] == "r2"
    assert got["gone"].status == 404
    assert got["flow"].json["state"] == "completed"
    assert got["flow"].json["stages"]["a"]["result"] == "ra"
    assert got["short"].status == 200 and got["short"].json["id"] == two


def test_flow_wait_ends_when_its_last_live_job_is_removed(srv):
    s = srv
    q = s.qname()
    f = s.call("POST", "/v1/flows", {"jobs": [{"ref": "a", "queue": q},
                                              {"ref": "b", "queue": q, "delay_ms": 600000}]},
               201)
    s.complete(s.fetch_until(q), 1)
    got = {}
    t = threading.Thread(target=lambda: got.update(
        f=s.request("GET", f"/v1/flows/{f['id']}?wait_ms=30000", timeout=40)))
    t.start()
    time.sleep(0.3)  # let it park (the answer below holds either way)
    assert s.request("DELETE", f"/v1/jobs/{f['jobs']['b']}").status == 204
    t.join(15)
    assert not t.is_alive(), "the wait was not answered when the flow ended"
    assert got["f"].status == 200 and got["f"].json["state"] == "cancelled"
    assert got["f"].json["stages"]["b"]["state"] == "removed"


def test_review_and_flow_events_reach_a_webhook(srv):
    from test_webhooks import Receiver
    s = srv
    rec = Receiver().start()
    try:
        project = s.qname("evproj")
        s.call("POST", "/v1/webhooks", {"url": rec.url + "/hook", "project": project, "events": [
            "job.review_requested", "flow.completed", "flow.failed"]}, 201)
        q = s.qname()
        ok = s.call("POST", "/v1/flows", {"name": "ok", "project": project, "jobs": [
            {"ref": "a", "queue": q, "review": True}]}, 201)
        a = s.fetch_until(q)
        s.complete(a, {"draft": 1})
        ev = rec.wait(1, type="job.review_requested")[0]["json"]
        assert ev["job"] == a["id"] and ev["flow"] == ok["id"] and ev["ref"] == "a"
        assert ev["result"] == {"draft": 1} and ev["project"] == project
        s.call("POST", f"/v1/jobs/{a['id']}/approve", {})
        ev = rec.wait(1, type="flow.completed")[0]["json"]
        assert ev["flow"] == ok["id"] and ev["state"] == "completed" and ev["name"] == "ok"
        bad = s.call("POST", "/v1/flows", {"name": "bad", "project": project, "jobs": [
            {"ref": "x", "queue": q, "max_attempts": 1}]}, 201)
        s.fail(s.fetch_until(q), "boom", retryable=False)
        ev = rec.wait(1, type="flow.failed")[0]["json"]
        assert ev["flow"] == bad["id"] and ev["failed"] == 1
    finally:
        rec.stop()


def test_cli_add_orchestration_options(srv):
    s = srv
    q = s.qname()
    p = cli(s, "add", q, '{"p": 1}', "--unique-key", "u1", "--cache", "a/b:c/60000")
    assert cli(s, "add", q, '{"p": 2}', "--unique-key", "u1")["deduplicated"] is True
    c = cli(s, "add", q, "{}", "--depends-on", p["id"], "--review")
    assert c["state"] == "blocked" and c["depends_on"] == [p["id"]] and c["review"] is True
    j = s.fetch_until(q)
    s.complete(j, {"r": 1})
    hit = cli(s, "add", q, "{}", "--cache", "a/b:c")
    assert hit["cached"] is True and hit["result"] == {"r": 1}
