import Foundation
import Logging
import DiskWatch
import Platform
import Remediate
import ServiceLifecycle

/// Runs the daemon's one `Alerter` (every database's remediation, the disk
/// guardian and the drills share it, so deduplication and "a resolve follows
/// every trigger" hold across all of them). It is the first service of the
/// group, so it stops last: alerts raised while the others shut down still go
/// out, for at most `drainLimit`.
struct AlertService: Service {
    let alerter: Alerter
    var drainLimit: Duration = .seconds(5)

    func run() async throws {
        let alerter = alerter
        let drainLimit = drainLimit
        await withTaskGroup(of: Void.self) { group in
            // (Returns at once when no destination is configured.)
            group.addTask { await alerter.run() }
            // Runs until the group shuts down (throws on cancellation: then
            // nothing is drained), then stops accepting and drains, briefly.
            try? await gracefulShutdown()
            await alerter.finishAndDrain(limit: drainLimit)
            group.cancelAll()
        }
    }
}

/// What the disk guardian's events mean for alerts and the event log.
///
/// | event | alert |
/// | --- | --- |
/// | level rises to warn / critical, emergency | trigger `disk-level` warning / critical |
/// | level back to normal | resolve `disk-level`, `disk-forecast`, `disk-cleanup` |
/// | forecast to fill within `forecast-warning` | trigger `disk-forecast` warning |
/// | forecast no longer short | resolve `disk-forecast` |
/// | cleanup could not get below the level | trigger `disk-cleanup` critical |
/// | ballast released / recreated | trigger / resolve `disk-ballast` critical |
/// | a log truncated to its tail (emergency) | trigger `disk-log-truncated` critical, naming the log and the bytes dropped; resolved with the level |
///
/// Keys carry the mount point, so two filesystems alert independently. A
/// level that falls from critical to warn keeps the critical alert until it
/// is back to normal (the condition is still there).
enum DiskAlertRules {
    enum Action: Equatable {
        case trigger(kind: String, severity: AlertSeverity, summary: String)
        case resolve(kind: String, summary: String)
    }

    static func actions(for e: DiskEvent) -> [Action] {
        let m = e.metadata
        let mount = m["mount"] ?? "?"
        switch e.event {
        case .diskLevelChanged:
            let to = m["to"].flatMap(DiskLevel.init(rawValue:)) ?? .normal
            let from = m["from"].flatMap(DiskLevel.init(rawValue:)) ?? .normal
            let usage = "\(m["used_percent"] ?? "?") % used, \(m["available_bytes"].flatMap(Int64.init).map(Units.formatBytes) ?? "?") free"
            if to == .normal {
                return ["disk-level-\(mount)", "disk-forecast-\(mount)", "disk-cleanup-\(mount)", "disk-log-truncated-\(mount)"].map {
                    .resolve(kind: $0, summary: "Disk \(mount) is back to normal (\(usage))")
                }
            }
            guard to > from else { return [] }
            let severity: AlertSeverity = to == .warn ? .warning : .critical
            return [.trigger(kind: "disk-level-\(mount)", severity: severity, summary: "Disk \(mount) reached level \(to.rawValue) (\(usage))")]
        case .diskFillForecast:
            let eta = m["forecast_seconds"].flatMap(Double.init).map { Units.formatDuration(.seconds(Int64($0))) } ?? "?"
            return [.trigger(kind: "disk-forecast-\(mount)", severity: .warning, summary: "Disk \(mount) is forecast to be full in \(eta) (\(m["used_percent"] ?? "?") % used)")]
        case .diskFillForecastCleared:
            return [.resolve(kind: "disk-forecast-\(mount)", summary: "Disk \(mount) is no longer forecast to fill up soon")]
        case .diskCleanupInsufficient:
            return [.trigger(kind: "disk-cleanup-\(mount)", severity: .critical, summary: "Disk \(mount): cleanup could not bring usage below the level; a human must free space")]
        case .ballastReleased:
            return [.trigger(kind: "disk-ballast-\(m["path"] ?? mount)", severity: .critical, summary: "Emergency ballast \(m["path"] ?? "?") released on \(mount) to keep the database writable")]
        case .logEmergencyTruncated:
            let dropped = m["bytes_dropped"].flatMap(Int64.init).map(Units.formatBytes) ?? "?"
            return [.trigger(
                kind: "disk-log-truncated-\(mount)", severity: .critical,
                summary: "Disk \(mount): log \(m["log"] ?? "?") truncated to its last \(m["bytes_kept"].flatMap(Int64.init).map(Units.formatBytes) ?? "?") to keep the database writable; \(dropped) of log lines dropped")]
        case .ballastRecreated:
            return [.resolve(kind: "disk-ballast-\(m["path"] ?? mount)", summary: "Emergency ballast \(m["path"] ?? "?") recreated")]
        default:
            return []
        }
    }
}

/// Hands the disk guardian's events to the shared alerter and records them
/// in guardian's event log — under each database on the event's filesystem,
/// so an incident's post-mortem can show what the disk did before it.
struct DiskAlertBridge: Sendable {
    let alerter: Alerter
    let store: StateStore
    let databases: [String]

    func handle(_ e: DiskEvent) async {
        let affected = await BlockingPool.shared.run { [databases] in Self.databases(databases, on: e.metadata["mount"]) }
        if e.level >= .warning || e.event == .diskLevelChanged {
            let detail = e.description
            let level = e.level >= .critical ? "critical" : e.level >= .error ? "error" : e.level >= .warning ? "warning" : "info"
            for db in affected.isEmpty ? [nil] : affected.map(Optional.some) {
                try? await store.log("disk-\(e.event.name)", level: level, database: db, detail: detail, at: e.time)
            }
        }
        for action in DiskAlertRules.actions(for: e) {
            switch action {
            case .trigger(let kind, let severity, let summary):
                var details = e.metadata
                if !affected.isEmpty { details["databases"] = affected.joined(separator: ", ") }
                await alerter.trigger(key: alerter.key(database: nil, kind: kind), severity: severity, summary: summary, database: affected.first, details: details, at: e.time)
            case .resolve(let kind, let summary):
                await alerter.resolve(key: alerter.key(database: nil, kind: kind), summary: summary, at: e.time)
            }
        }
    }

    /// The databases whose directory lives on the filesystem mounted at `mount`.
    static func databases(_ paths: [String], on mount: String?) -> [String] {
        guard let mount else { return [] }
        var m = stat()
        guard stat(mount, &m) == 0 else { return [] }
        return paths.filter { path in
            var s = stat()
            return stat((path as NSString).deletingLastPathComponent, &s) == 0 && s.st_dev == m.st_dev
        }
    }
}
