import Foundation
import Logging
import Platform
import Remediate
import Replication

/// The services of one database in `guardian run`: its replication, its
/// remediation (unless `remediate: off`) and its scheduled drills. Used for
/// the `path:` entries at the start of a configuration generation and for
/// each database a directory entry discovers (`DirectoryService`).
struct DatabaseWiring: Sendable {
    let stateDir: String
    let alerts: [AlertConfig]
    let alerter: Alerter
    /// The daemon's one state database connection, shared by every
    /// database's remediation (not one connection per database).
    let store: StateStore
    let board: StatusBoard
    let control: ReplicationControl
    let logger: Logger

    struct Services: Sendable {
        var replication: ReportingReplicationService
        var remediation: RemediationService?
        var drills: DrillService?
    }

    /// The heartbeat name of a database's replication loop on the board.
    static func loopName(_ path: String) -> String { "db:\(path)" }

    /// `drills: false` leaves the drills to the caller (a directory entry
    /// drills a rotating sample of its databases instead).
    func services(for db: GuardianConfig.Database, drills: Bool = true) -> Services {
        let loop = Self.loopName(db.path)
        let board = board
        let control = control
        // Remediation pauses this database's replication while it swaps
        // files, and reads its status (for lag alerts and the RPO of a
        // post-mortem). Its loop is not on the watchdog: an incident may
        // legitimately take minutes.
        var remediation: RemediationService?
        if db.remediation.mode != .off {
            let hooks = RemediationHooks(
                pause: { await control.pause($0) },
                resume: { path, _ in await control.resume(path) })
            remediation = RemediationService(
                database: db.path, config: db.remediation, store: store, alerter: alerter, ownsAlerter: false,
                app: RemediationService.appController(for: db.remediation), source: ReplicaRestoreSource(replicas: db.replication.replicas),
                hooks: hooks, logger: logger, onStatus: { await board.updateHealth($0) })
        }
        let observer = remediation
        let service = ReplicationService(
            config: db.replication, stateDir: stateDir, logger: logger,
            onStatus: { status in
                await board.update(status)
                await observer?.observe(replication: status)
            },
            heartbeat: { board.beatNow(loop) }, control: control)
        var drillService: DrillService?
        // Scheduled recovery drills; not on the watchdog either (a drill may take minutes).
        if drills, let drill = db.drill, !db.replication.replicas.isEmpty {
            drillService = DrillService(
                database: db.path, replicas: db.replication.replicas, config: drill, stateDir: stateDir,
                alerter: alerter, runsAlerter: false, logger: logger, onStatus: { await board.updateDrill($0) })
        }
        return Services(
            replication: ReportingReplicationService(inner: service, board: board, logger: logger), remediation: remediation,
            drills: drillService)
    }
}
