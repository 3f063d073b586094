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
    /// Behind a lock, not the actor: a replication loop beats from its
    /// worker thread without a hop to the board (`beatNow`).
    private nonisolated let heartbeats = Beats()

    final class Beats: @unchecked Sendable {
        private let lock = NSLock()
        private var last: [String: ContinuousClock.Instant] = [:]
        func beat(_ name: String) { lock.withLock { last[name] = .now } }
        func remove(_ name: String) { lock.withLock { _ = last.removeValue(forKey: name) } }
        func stale(limit: Duration) -> [String] {
            let now = ContinuousClock.now
            return lock.withLock { last.filter { now - $0.value > limit }.map(\.key) }.sorted()
        }
    }
    private var readyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter = 0
    private var disk: [MountStatus] = []
    private var health: [String: HealthStatus] = [:]
    private var drills: [String: DrillStatus] = [:]
    private var directories: [String: DirectoryStatus] = [:]

    init(configPath: String, databasePaths: [String]) {
        self.configPath = configPath
        order = databasePaths
        for path in databasePaths { databases[path] = DatabaseStatus(path: path, state: "opening") }
        opening = Set(databasePaths)
    }

    /// Databases that have not reported yet (kept, so that an update does not scan them all).
    private var opening: Set<String> = []

    func setState(_ state: State) { self.state = state }

    /// What the summary counts, kept up to date as statuses come and go:
    /// systemd's STATUS is compared every second, and a thousand databases'
    /// statuses (a few change every second) need not be counted each time.
    private var openCount = 0
    private var failingReplicas = 0

    private func count(_ s: DatabaseStatus, _ sign: Int) {
        if s.state == "open" { openCount += sign }
        failingReplicas += sign * s.replicas.reduce(0) { $0 + ($1.state == "Failing" ? 1 : 0) }
    }

    func update(_ status: DatabaseStatus) {
        // A database a directory entry stopped replicating may report once more.
        guard let old = databases[status.path] else { return }
        count(old, -1)
        count(status, 1)
        databases[status.path] = status
        if status.state != "opening", opening.remove(status.path) != nil { releaseIfSettled() }
    }

    private func releaseIfSettled() {
        guard opening.isEmpty else { return }
        for w in readyWaiters.values { w.resume() }
        readyWaiters.removeAll()
    }

    /// Every database has been opened (or has reported why it cannot be).
    var allDatabasesSettled: Bool { opening.isEmpty }

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

    func beat(_ name: String) { heartbeats.beat(name) }

    /// The same from any thread, at once.
    nonisolated func beatNow(_ name: String) { heartbeats.beat(name) }

    /// A database a directory entry found while running.
    func addDatabase(_ path: String) {
        guard databases[path] == nil else { return }
        order.append(path)
        databases[path] = DatabaseStatus(path: path, state: "opening")
        opening.insert(path)
    }

    /// A database a directory entry stopped replicating (deleted, renamed).
    func removeDatabase(_ path: String, loop: String) {
        guard let old = databases.removeValue(forKey: path) else { return }
        count(old, -1)
        order.removeAll { $0 == path }
        if opening.remove(path) != nil { releaseIfSettled() }
        health.removeValue(forKey: path)
        drills.removeValue(forKey: path)
        heartbeats.remove(loop)
    }

    /// What a directory entry found and skipped.
    func updateDirectory(_ status: DirectoryStatus) { directories[status.dir] = status }

    func updateDisk(_ mounts: [MountStatus]) { disk = mounts }

    func updateHealth(_ status: HealthStatus) { health[status.path] = status }

    /// The last drill of each replica and the next drill of a database (DrillService).
    func updateDrill(_ status: DrillStatus) { drills[status.path] = status }

    /// Names of loops whose last heartbeat is older than `limit`.
    func staleLoops(limit: Duration) -> [String] {
        heartbeats.stale(limit: limit)
    }

    func forget(_ name: String) { heartbeats.remove(name) }

    func document() -> StatusDocument {
        StatusDocument(
            version: GuardianVersion.string, pid: getpid(), startedAt: Timestamps.iso8601(startedAt),
            uptimeSeconds: (Date().timeIntervalSince(startedAt) * 1000).rounded() / 1000,
            config: configPath, state: state.rawValue,
            databases: order.compactMap { databases[$0] }, disk: disk, health: order.compactMap { health[$0] },
            drills: order.compactMap { drills[$0] },
            directories: directories.keys.sorted().compactMap { directories[$0] })
    }

    /// One line for systemd's STATUS=.
    func summary() -> String {
        var text = "\(state.rawValue): \(openCount)/\(databases.count) databases open"
        if failingReplicas > 0 { text += ", \(failingReplicas) replicas failing" }
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
    /// Directory entries: their databases and the files they skipped.
    var directories: [DirectoryStatus] = []

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }

    init(
        version: String, pid: Int32, startedAt: String, uptimeSeconds: Double, config: String, state: String,
        databases: [DatabaseStatus], disk: [MountStatus] = [], health: [HealthStatus] = [], drills: [DrillStatus] = [],
        directories: [DirectoryStatus] = []
    ) {
        self.version = version
        self.pid = pid
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.config = config
        self.state = state
        self.databases = databases
        self.disk = disk
        self.health = health
        self.drills = drills
        self.directories = directories
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(String.self, forKey: .version)
        pid = try c.decode(Int32.self, forKey: .pid)
        startedAt = try c.decode(String.self, forKey: .startedAt)
        uptimeSeconds = try c.decode(Double.self, forKey: .uptimeSeconds)
        config = try c.decode(String.self, forKey: .config)
        state = try c.decode(String.self, forKey: .state)
        databases = try c.decode([DatabaseStatus].self, forKey: .databases)
        disk = try c.decodeIfPresent([MountStatus].self, forKey: .disk) ?? []
        health = try c.decodeIfPresent([HealthStatus].self, forKey: .health) ?? []
        drills = try c.decodeIfPresent([DrillStatus].self, forKey: .drills) ?? []
        directories = try c.decodeIfPresent([DirectoryStatus].self, forKey: .directories) ?? []
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }
}

/// `directories[]` of the status document: a directory entry.
struct DirectoryStatus: Codable, Sendable, Equatable {
    struct Skipped: Codable, Sendable, Equatable {
        var path: String
        var reason: String
    }

    var dir: String
    var pattern: String
    var recursive: Bool
    var watch: Bool
    /// Databases replicated now.
    var databases: Int
    /// Files matching the pattern that are not replicated, and why.
    var skipped: [Skipped]
}
