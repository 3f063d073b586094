import DiskWatch
import Foundation
import Platform
import Remediate
import Replication

/// guardian's metrics, computed from one status document at scrape time:
/// every value here is also in `guardian status --json` (the README's
/// "Metrics" section lists each family and the status field it comes from).
/// Counters count since the daemon started or last reloaded its
/// configuration; Prometheus' `rate()` and `increase()` handle the reset.
enum GuardianMetrics {
    static let daemonStates = ["starting", "ready", "reloading", "stopping"]
    static let databaseStates = ["opening", "open", "paused", "missing", "error"]
    static let replicaStates = ["Starting", "Syncing", "Lagging", "Failing"]
    static let integrityStates = ["unchecked", "ok", "suspect", "corrupt", "inconclusive", "missing"]
    static let healthStates = ["healthy", "warning", "critical", "suspect", "remediating", "escalated", "awaiting-operator", "missing", "off"]
    static let walLevels = ["ok", "warning", "critical"]

    /// The content type of what `render` returns (Prometheus text format 0.0.4).
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The document's figures in the Prometheus text format, recorded through
    /// `pipeline` (a fresh one when none is given).
    static func render(_ doc: StatusDocument, pipeline: MetricsPipeline = MetricsPipeline()) -> String {
        pipeline.render(samples(doc))
    }

    static func samples(_ doc: StatusDocument) -> MetricSamples {
        var m = MetricSamples()
        daemon(doc, &m)
        databases(doc, &m)
        replicas(doc, &m)
        health(doc, &m)
        disk(doc, &m)
        drills(doc, &m)
        return m
    }

    private static func drills(_ doc: StatusDocument, _ m: inout MetricSamples) {
        let newest = doc.drills.flatMap { d in d.replicas.map { (labels: [("db", d.path), ("replica", $0.replica)], drill: $0) } }
        m.family("guardian_drill_last_success", .gauge, "1 when the newest recovery drill of the replica passed, 0 when it failed.") { f in
            for (l, d) in newest { f.add(l, d.result == "PASSED") }
        }
        m.family("guardian_drill_last_duration_seconds", .gauge, "How long the newest recovery drill of the replica took.") { f in
            for (l, d) in newest { f.add(l, d.durationSeconds) }
        }
        m.family("guardian_drill_last_timestamp_seconds", .gauge, "When the newest recovery drill of the replica started (Unix time, seconds).") { f in
            for (l, d) in newest { f.add(l, seconds(d.startedAt)) }
        }
        m.family("guardian_drill_last_rows", .gauge, "Rows counted by the first verification query of the replica's newest drill.") { f in
            for (l, d) in newest { f.add(l, d.rows) }
        }
        m.family("guardian_drill_running", .gauge, "1 while a recovery drill of the database runs.") { f in
            for d in doc.drills { f.add([("db", d.path)], d.running) }
        }
        m.family("guardian_drill_next_timestamp_seconds", .gauge, "When the next scheduled recovery drill of the database starts (Unix time, seconds).") { f in
            for d in doc.drills { f.add([("db", d.path)], seconds(d.nextAt)) }
        }
    }

    /// One sample per known state, 1 for the current one (an unknown current
    /// state gets its own sample, so it is never hidden).
    private static func stateSet(_ f: inout MetricSamples.Family, _ labels: [(String, String)], key: String, states: [String], current: String) {
        for s in states { f.add(labels + [(key, s)], s == current) }
        if !states.contains(current) { f.add(labels + [(key, current)], true) }
    }

    private static func seconds(_ rfc3339: String?) -> Double? {
        rfc3339.flatMap(Timestamps.parse).map(\.timeIntervalSince1970)
    }

    private static func ratio(_ part: Int64, _ whole: Int64) -> Double? {
        whole > 0 ? Double(part) / Double(whole) : nil
    }

    private static func txid(_ hex: String?) -> Double? {
        hex.flatMap { UInt64($0, radix: 16) }.map { Double($0) }
    }

    private static func daemon(_ doc: StatusDocument, _ m: inout MetricSamples) {
        m.family("guardian_build_info", .gauge, "Always 1; the version label names the running guardian.") {
            $0.add([("version", doc.version)], 1)
        }
        m.family("guardian_process_start_time_seconds", .gauge, "When the daemon started (Unix time, seconds).") {
            $0.add([], seconds(doc.startedAt))
        }
        m.family("guardian_state", .gauge, "Daemon state: 1 for the current one of starting, ready, reloading, stopping.") {
            stateSet(&$0, [], key: "state", states: daemonStates, current: doc.state)
        }
    }

    private static func databases(_ doc: StatusDocument, _ m: inout MetricSamples) {
        let dbs = doc.databases
        m.family("guardian_database_state", .gauge, "Database state: 1 for the current one of opening, open, paused, missing, error.") { f in
            for d in dbs { stateSet(&f, [("db", d.path)], key: "state", states: databaseStates, current: d.state) }
        }
        m.family("guardian_database_txid", .gauge, "guardian's local position: TXID of the newest LTX file cut from the WAL.") { f in
            for d in dbs { f.add([("db", d.path)], txid(d.txid)) }
        }
        m.family("guardian_database_size_bytes", .gauge, "Size of the database file in bytes.") { f in
            for d in dbs { f.add([("db", d.path)], d.dbSize) }
        }
        m.family("guardian_wal_size_bytes", .gauge, "Size of the database's -wal file in bytes.") { f in
            for d in dbs { f.add([("db", d.path)], d.walSize) }
        }
        m.family("guardian_last_commit_timestamp_seconds", .gauge, "When guardian last observed a commit (Unix time, seconds).") { f in
            for d in dbs { f.add([("db", d.path)], seconds(d.lastCommit)) }
        }
        m.family("guardian_checkpoints_total", .counter, "guardian's checkpoints by result: ok (whole WAL copied), busy (stopped short by a reader or writer), failed (SQLite error).") { f in
            for d in dbs {
                guard let c = d.checkpointResults else { continue }
                f.add([("db", d.path), ("result", "ok")], c.ok)
                f.add([("db", d.path), ("result", "busy")], c.busy)
                f.add([("db", d.path), ("result", "failed")], c.failed)
            }
        }
    }

    private static func replicas(_ doc: StatusDocument, _ m: inout MetricSamples) {
        let all = doc.databases.flatMap { d in d.replicas.map { (labels: [("db", d.path), ("replica", $0.name), ("type", $0.type)], r: $0) } }
        m.family("guardian_replica_state", .gauge, "Replica state: 1 for the current one of Starting, Syncing, Lagging, Failing.") { f in
            for (l, r) in all { stateSet(&f, l, key: "state", states: replicaStates, current: r.state) }
        }
        m.family("guardian_replica_lag_seconds", .gauge, "Age of the oldest commit not yet on the replica; 0 when caught up.") { f in
            for (l, r) in all { f.add(l, Double(r.lagMs) / 1000) }
        }
        m.family("guardian_replica_txid", .gauge, "Replicated position: TXID of the newest LTX file on the replica.") { f in
            for (l, r) in all { f.add(l, txid(r.position)) }
        }
        m.family("guardian_replica_last_sync_timestamp_seconds", .gauge, "When a file last reached the replica (Unix time, seconds).") { f in
            for (l, r) in all { f.add(l, seconds(r.lastSync)) }
        }
        m.family("guardian_replica_bytes_total", .counter, "LTX bytes stored on the replica.") { f in
            for (l, r) in all { f.add(l, r.bytes) }
        }
        m.family("guardian_replica_requests_total", .counter, "Requests made to the replica (writes, lists, reads, deletes).") { f in
            for (l, r) in all { f.add(l, r.requests) }
        }
        m.family("guardian_replica_errors_total", .counter, "Failed sync attempts (each retry counts).") { f in
            for (l, r) in all { f.add(l, r.errors ?? 0) }
        }
        m.family("guardian_replica_consecutive_failures", .gauge, "Failed attempts since the replica last stored a file.") { f in
            for (l, r) in all { f.add(l, r.consecutiveFailures) }
        }
    }

    private static func health(_ doc: StatusDocument, _ m: inout MetricSamples) {
        let all = doc.health
        m.family("guardian_health_state", .gauge, "Remediation's view of the database: 1 for the current state.") { f in
            for h in all { stateSet(&f, [("db", h.path)], key: "state", states: healthStates, current: h.state) }
        }
        m.family("guardian_wal_health", .gauge, "Checkpoint and WAL health level: 1 for the current one of ok, warning, critical.") { f in
            for h in all {
                guard let c = h.checkpoint else { continue }
                stateSet(&f, [("db", h.path)], key: "level", states: walLevels, current: c.level)
            }
        }
        m.family("guardian_checkpoint_seconds_since_complete", .gauge, "Seconds since every WAL frame was last known checkpointed.") { f in
            for h in all { f.add([("db", h.path)], h.checkpoint?.secondsSinceComplete) }
        }
        m.family("guardian_checkpoint_starved", .gauge, "1 while long-running readers keep checkpoints from completing and the WAL grows.") { f in
            for h in all {
                guard let c = h.checkpoint else { continue }
                f.add([("db", h.path)], c.starved)
            }
        }
        m.family("guardian_integrity_state", .gauge, "Integrity state: 1 for the current one of unchecked, ok, suspect, corrupt, inconclusive, missing.") { f in
            for h in all { stateSet(&f, [("db", h.path)], key: "state", states: integrityStates, current: h.integrity.state) }
        }
        m.family("guardian_integrity_last_check_timestamp_seconds", .gauge, "When the last integrity check ran (Unix time, seconds).") { f in
            for h in all { f.add([("db", h.path)], seconds(h.integrity.lastCheckAt)) }
        }
        m.family("guardian_incidents_open", .gauge, "Open incidents of the database.") { f in
            for h in all { f.add([("db", h.path)], h.openIncidents.count) }
        }
        m.family("guardian_incidents_opened_total", .counter, "Incidents opened.") { f in
            for h in all { f.add([("db", h.path)], h.incidentsOpened ?? 0) }
        }
    }

    private static func disk(_ doc: StatusDocument, _ m: inout MetricSamples) {
        let mounts = doc.disk
        func each(_ f: inout MetricSamples.Family, _ value: (MountStatus) -> Double?) {
            for d in mounts { f.add([("mount", d.mountPoint)], value(d)) }
        }
        m.family("guardian_disk_size_bytes", .gauge, "Size of the filesystem in bytes.") { each(&$0) { Double($0.totalBytes) } }
        m.family("guardian_disk_used_bytes", .gauge, "Used bytes of the filesystem.") { each(&$0) { Double($0.usedBytes) } }
        m.family("guardian_disk_available_bytes", .gauge, "Free bytes available to unprivileged users (statvfs f_bavail).") { each(&$0) { Double($0.availableBytes) } }
        m.family("guardian_disk_used_ratio", .gauge, "Used bytes / (used + available), as df shows it (0-1).") { each(&$0) { ratio($0.usedBytes, $0.usedBytes + $0.availableBytes) } }
        m.family("guardian_disk_inodes", .gauge, "Inodes of the filesystem (none on filesystems without an inode limit).") { each(&$0) { $0.inodesTotal.map { Double($0) } } }
        m.family("guardian_disk_inodes_used", .gauge, "Used inodes.") { each(&$0) { $0.inodesUsed.map { Double($0) } } }
        m.family("guardian_disk_inodes_available", .gauge, "Free inodes available to unprivileged users.") { each(&$0) { $0.inodesAvailable.map { Double($0) } } }
        m.family("guardian_disk_inodes_used_ratio", .gauge, "Used inodes / (used + available) (0-1).") { each(&$0) { m in m.inodesUsed.flatMap { used in m.inodesAvailable.flatMap { ratio(used, used + $0) } } } }
        m.family("guardian_disk_level", .gauge, "Disk level: 1 for the current one of normal, warn, critical, emergency.") { f in
            for d in mounts {
                for level in DiskLevel.allCases { f.add([("mount", d.mountPoint), ("level", level.rawValue)], level == d.level) }
            }
        }
        m.family("guardian_disk_time_to_full_seconds", .gauge, "Forecast time until the filesystem is full at the recent growth rate; +Inf when not growing.") {
            each(&$0) { $0.forecastSecondsToFull ?? .infinity }
        }
        m.family("guardian_disk_ballast_present", .gauge, "1 while the emergency ballast file on this filesystem is in place, 0 once released.") { f in
            for d in mounts {
                guard let b = d.ballast else { continue }
                f.add([("mount", d.mountPoint)], b.state == "present")
            }
        }
    }
}
