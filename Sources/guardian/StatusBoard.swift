import Foundation
import Platform
import DiskWatch
import Remediate
import Replication

/// The daemon's shared view of itself: each service publishes its status
/// here, the status socket reads it, and the watchdog checks the services'
/// heartbeats before telling systemd that guardian is alive.
actor StatusBoard {
    enum State: String, Sendable { case starting, ready, reloading, stopping }

    let startedAt = Date()
    let configPath: String
    private(set) var state: State = .starting
    private var databases: [String: DatabaseStatus] = [:]
    private var order: [String] = []
    private var heartbeats: [String: ContinuousClock.Instant] = [:]
    private var readyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter = 0
    private var disk: [MountStatus] = []
    private var health: [String: HealthStatus] = [:]
    private var drills: [String: DrillStatus] = [:]

    init(configPath: String, databasePaths: [String]) {
        self.configPath = configPath
        order = databasePaths
        for path in databasePaths { databases[path] = DatabaseStatus(path: path, state: "opening") }
    }

    func setState(_ state: State) { self.state = state }

    func update(_ status: DatabaseStatus) {
        databases[status.path] = status
        if allDatabasesSettled {
            for w in readyWaiters.values { w.resume() }
            readyWaiters.removeAll()
        }
    }

    /// Every database has been opened (or has reported why it cannot be).
    var allDatabasesSettled: Bool { databases.values.allSatisfy { $0.state != "opening" } }

    /// Returns when every database has settled, or when the task is cancelled.
    func waitUntilDatabasesSettled() async {
        if allDatabasesSettled { return }
        let id = nextWaiter
        nextWaiter += 1
        await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                if Task.isCancelled { c.resume() } else { readyWaiters[id] = c }
            }
        } onCancel: {
            Task { await self.releaseWaiter(id) }
        }
    }

    private func releaseWaiter(_ id: Int) { readyWaiters.removeValue(forKey: id)?.resume() }

    func beat(_ name: String) { heartbeats[name] = .now }

    func updateDisk(_ mounts: [MountStatus]) { disk = mounts }

    func updateHealth(_ status: HealthStatus) { health[status.path] = status }

    /// The last drill of each replica and the next drill of a database (DrillService).
    func updateDrill(_ status: DrillStatus) { drills[status.path] = status }

    /// Names of loops whose last heartbeat is older than `limit`.
    func staleLoops(limit: Duration) -> [String] {
        let now = ContinuousClock.now
        return heartbeats.filter { now - $0.value > limit }.map(\.key).sorted()
    }

    func forget(_ name: String) { heartbeats.removeValue(forKey: name) }

    func document() -> StatusDocument {
        StatusDocument(
            version: GuardianVersion.string, pid: getpid(), startedAt: Timestamps.iso8601(startedAt),
            uptimeSeconds: (Date().timeIntervalSince(startedAt) * 1000).rounded() / 1000,
            config: configPath, state: state.rawValue,
            databases: order.compactMap { databases[$0] }, disk: disk, health: order.compactMap { health[$0] },
            drills: order.compactMap { drills[$0] })
    }

    /// One line for systemd's STATUS=.
    func summary() -> String {
        let dbs = order.compactMap { databases[$0] }
        let open = dbs.filter { $0.state == "open" }.count
        var text = "\(state.rawValue): \(open)/\(dbs.count) databases open"
        let failing = dbs.flatMap(\.replicas).filter { $0.state == "Failing" }.count
        if failing > 0 { text += ", \(failing) replicas failing" }
        if let worst = disk.map(\.level).max(), worst != .normal { text += ", disk \(worst.rawValue)" }
        return text
    }
}

/// The document `guardian status --json` prints; the README documents it.
struct StatusDocument: Codable, Sendable {
    var version: String
    var pid: Int32
    var startedAt: String
    var uptimeSeconds: Double
    var config: String
    var state: String
    var databases: [DatabaseStatus]
    var disk: [MountStatus] = []
    /// Checkpoint health, integrity and incidents per database (remediation).
    var health: [HealthStatus] = []
    /// Recovery drills per database: the newest of each replica, the next one.
    var drills: [DrillStatus] = []

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }
}
