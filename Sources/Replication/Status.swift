/// What `guardian status` shows for one database. Part of the stable
/// `--json` document (keys are snake_case there); documented in the README.
public struct DatabaseStatus: Codable, Sendable, Equatable {
    public var path: String
    /// `opening`, `open`, `missing`, `error`.
    public var state: String
    public var error: String?
    public var pageSize: Int?
    public var dbSize: Int64?
    public var walSize: Int64?
    /// guardian's local position: the TXID of the newest LTX file cut (16 hex digits).
    public var txid: String?
    /// Time of the newest commit guardian observed.
    public var lastCommit: String?
    public var checkpoint: CheckpointStatus?
    /// How guardian's own checkpoints of this database went since start.
    public var checkpointResults: CheckpointCounts?
    public var replicas: [ReplicaStatus]

    public init(path: String, state: String, error: String? = nil, pageSize: Int? = nil, dbSize: Int64? = nil, walSize: Int64? = nil, txid: String? = nil, lastCommit: String? = nil, checkpoint: CheckpointStatus? = nil, checkpointResults: CheckpointCounts? = nil, replicas: [ReplicaStatus] = []) {
        self.checkpoint = checkpoint
        self.checkpointResults = checkpointResults
        self.path = path
        self.state = state
        self.error = error
        self.pageSize = pageSize
        self.dbSize = dbSize
        self.walSize = walSize
        self.txid = txid
        self.lastCommit = lastCommit
        self.replicas = replicas
    }
}

public struct ReplicaStatus: Codable, Sendable, Equatable {
    public var name: String
    public var type: String
    public var destination: String
    /// `Syncing` (caught up or within its sync interval), `Lagging`, `Failing`, `Starting`.
    public var state: String
    /// TXID of the newest LTX file on the replica (16 hex digits).
    public var position: String?
    /// Milliseconds since the oldest commit not yet on the replica; 0 when caught up.
    public var lagMs: Int64
    public var lastSync: String?
    public var error: String?
    public var consecutiveFailures: Int
    /// Requests made to the replica and LTX bytes stored since start.
    public var requests: Int
    public var bytes: Int64
    /// Failed sync attempts since start (each retry counts).
    public var errors: Int?

    public init(name: String, type: String, destination: String, state: String, position: String? = nil, lagMs: Int64 = 0, lastSync: String? = nil, error: String? = nil, consecutiveFailures: Int = 0, requests: Int = 0, bytes: Int64 = 0, errors: Int? = nil) {
        self.requests = requests
        self.bytes = bytes
        self.errors = errors
        self.name = name
        self.type = type
        self.destination = destination
        self.state = state
        self.position = position
        self.lagMs = lagMs
        self.lastSync = lastSync
        self.error = error
        self.consecutiveFailures = consecutiveFailures
    }
}

/// The outcome of guardian's newest checkpoint of a database.
public struct CheckpointStatus: Codable, Sendable, Equatable {
    public var mode: String
    public var busy: Bool
    public var logFrames: Int
    public var checkpointedFrames: Int
    public var at: String

    public init(mode: String, busy: Bool, logFrames: Int, checkpointedFrames: Int, at: String) {
        self.mode = mode
        self.busy = busy
        self.logFrames = logFrames
        self.checkpointedFrames = checkpointedFrames
        self.at = at
    }
}

/// Counts of guardian's checkpoints of one database by result: `ok` (every
/// frame of the WAL copied), `busy` (stopped early by a reader or writer:
/// normal under load, the next one catches up), `failed` (an SQLite error).
public struct CheckpointCounts: Codable, Sendable, Equatable {
    public var ok: Int
    public var busy: Int
    public var failed: Int

    public init(ok: Int = 0, busy: Int = 0, failed: Int = 0) {
        self.ok = ok
        self.busy = busy
        self.failed = failed
    }
}
