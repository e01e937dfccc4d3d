//! Metrics and logs for operators.
//!
//! Metrics go through the `metrics` facade, which is process-global by design; the
//! Prometheus recorder is installed once ([`metrics_handle`]) and rendered by
//! `GET /metrics`. Names:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `kontor_runs_started_total` | counter | `workflow` |
//! | `kontor_runs_finished_total` | counter | `workflow`, `status` (completed, failed, cancelled) |
//! | `kontor_step_retries_total` | counter | `workflow` |
//! | `kontor_runs_cancelled_total` | counter | — |
//! | `kontor_step_duration_seconds` | histogram | `action` (set, branch, wait_for, ...) |
//! | `kontor_job_duration_seconds` | histogram | — (execution of one job, its steps inline) |
//! | `kontor_commit_duration_seconds` | histogram | — (one batch's transaction) |
//! | `kontor_queue_depth` | gauge | — (jobs due now, set when scraped) |
//! | `kontor_oldest_due_job_age_seconds` | gauge | — (how late the oldest due job is) |
//! | `kontor_email_sent_total` | counter | `channel` |
//! | `kontor_email_failed_total` | counter | `channel` (5xx, or out of attempts) |
//! | `kontor_email_retries_total` | counter | `channel` (4xx and connection problems) |
//! | `kontor_email_suppressed_total` | counter | `reason` (hard_bounce, complaint, soft_bounces, unsubscribed) |
//! | `kontor_email_unsubscribes_total` | counter | `purpose` |
//! | `kontor_email_dispatch_latency_seconds` | histogram | — (queued → accepted by the transport) |
//! | `kontor_folder_scan_failures_total` | counter | `folder` (a scan that could not read the folder; the catalog loaded before stays) |
//! | `kontor_http_connections` | gauge | — (open API connections) |
//! | `kontor_http_connections_evicted_total` | counter | — (idle ones closed at `http.max_connections`) |
//! | `kontor_http_connections_refused_total` | counter | — (every connection busy) |
//! | `kontor_http_accept_errors_total` | counter | — (out of descriptors, for instance) |
//! | `kontor_http_requests_shed_total` | counter | — (over `http.max_requests`) |
//! | `kontor_http_requests_timed_out_total` | counter | — (over `http.request_timeout`) |

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus recorder's handle, installing the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ])
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a library user's); then ours
            // still renders what it recorded, which is nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
