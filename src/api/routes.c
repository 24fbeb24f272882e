/* routes.c — the route table: method + path pattern → handler. "{}" is one path segment. */
#include "api/api.h"

const jobq_route jobq_routes[] = {
    {"GET", "/healthz", jobq_h_healthz},
    {"GET", "/readyz", jobq_h_readyz},

    {"GET", "/v1/queues", jobq_h_queues_list},
    {"POST", "/v1/queues", jobq_h_queue_create},
    {"GET", "/v1/queues/{}", jobq_h_queue_get},
    {"PATCH", "/v1/queues/{}", jobq_h_queue_patch},
    {"DELETE", "/v1/queues/{}", jobq_h_queue_delete},
    {"POST", "/v1/queues/{}/pause", jobq_h_queue_pause},
    {"POST", "/v1/queues/{}/resume", jobq_h_queue_resume},
    {"POST", "/v1/queues/{}/drain", jobq_h_queue_drain},
    {"POST", "/v1/queues/{}/clear", jobq_h_queue_clear},
    {"POST", "/v1/queues/{}/clean", jobq_h_queue_clean},
    {"POST", "/v1/queues/{}/recover", jobq_h_queue_recover},
    {"GET", "/v1/queues/{}/stats", jobq_h_queue_stats},
    {"POST", "/v1/queues/{}/jobs", jobq_h_enqueue},

    {"GET", "/v1/jobs", jobq_h_jobs_list},
    {"GET", "/v1/jobs/{}", jobq_h_job_get},
    {"PATCH", "/v1/jobs/{}", jobq_h_job_patch},
    {"DELETE", "/v1/jobs/{}", jobq_h_job_delete},
    {"GET", "/v1/jobs/{}/result", jobq_h_job_result},
    {"GET", "/v1/jobs/{}/history", jobq_h_job_history},
    {"GET", "/v1/jobs/{}/logs", jobq_h_job_logs_get},
    {"POST", "/v1/jobs/{}/logs", jobq_h_logs_post},
    {"POST", "/v1/jobs/{}/cancel", jobq_h_job_cancel},
    {"POST", "/v1/jobs/{}/retry", jobq_h_job_retry},
    {"POST", "/v1/jobs/{}/heartbeat", jobq_h_heartbeat},
    {"POST", "/v1/jobs/{}/progress", jobq_h_progress},
    {"POST", "/v1/jobs/{}/complete", jobq_h_complete},
    {"POST", "/v1/jobs/{}/fail", jobq_h_fail},

    {"POST", "/v1/jobs/{}/approve", jobq_h_job_approve},
    {"POST", "/v1/jobs/{}/reject", jobq_h_job_reject},

    {"POST", "/v1/flows", jobq_h_flow_create},
    {"GET", "/v1/flows", jobq_h_flows_list},
    {"GET", "/v1/flows/{}", jobq_h_flow_get},
    {"POST", "/v1/flows/{}/cancel", jobq_h_flow_cancel},

    {"POST", "/v1/pipelines", jobq_h_pipeline_put},
    {"GET", "/v1/pipelines", jobq_h_pipelines_list},
    {"GET", "/v1/pipelines/{}", jobq_h_pipeline_get},
    {"DELETE", "/v1/pipelines/{}", jobq_h_pipeline_delete},
    {"POST", "/v1/pipelines/{}/runs", jobq_h_pipeline_run},

    {"POST", "/v1/fetch", jobq_h_fetch},
    {"POST", "/v1/ack", jobq_h_ack},
    {"GET", "/v1/workers", jobq_h_workers},

    {"GET", "/v1/dead-letter", jobq_h_dead_list},
    {"GET", "/v1/dead-letter/stats", jobq_h_dead_stats},
    {"POST", "/v1/dead-letter/retry", jobq_h_dead_retry},

    {"GET", "/v1/stats", jobq_h_stats},
    {"GET", "/v1/events", jobq_h_events},
    {"GET", "/v1/worker", jobq_h_worker_ws},
    {"GET", "/v1/stats/series", jobq_h_stats_series},
    {"GET", "/v1/stats/daily", jobq_h_stats_daily},
    {"GET", "/v1/health", jobq_h_health},
    {"GET", "/metrics", jobq_h_metrics},

    {"GET", "/v1/webhooks", jobq_h_webhooks_list},
    {"POST", "/v1/webhooks", jobq_h_webhook_create},
    {"GET", "/v1/webhooks/{}", jobq_h_webhook_get},
    {"DELETE", "/v1/webhooks/{}", jobq_h_webhook_delete},
    {"GET", "/v1/webhooks/{}/deliveries", jobq_h_webhook_deliveries},

    {"GET", "/v1/config", jobq_h_config_get},
    {"PATCH", "/v1/config", jobq_h_config_patch},

    {"GET", "/v1/schedules", jobq_h_schedules_list},
    {"POST", "/v1/schedules", jobq_h_schedule_create},
    {"GET", "/v1/schedules/{}", jobq_h_schedule_get},
    {"PATCH", "/v1/schedules/{}", jobq_h_schedule_patch},
    {"DELETE", "/v1/schedules/{}", jobq_h_schedule_delete},
    {"POST", "/v1/schedules/{}/pause", jobq_h_schedule_pause},
    {"POST", "/v1/schedules/{}/resume", jobq_h_schedule_resume},
    {"POST", "/v1/schedules/{}/trigger", jobq_h_schedule_trigger},
};

const size_t jobq_nroutes = sizeof jobq_routes / sizeof jobq_routes[0];
