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
    public var replicas: [ReplicaStatus]

    public init(path: String, state: String, error: String? = nil, pageSize: Int? = nil, dbSize: Int64? = nil, walSize: Int64? = nil, txid: String? = nil, lastCommit: String? = nil, replicas: [ReplicaStatus] = []) {
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

    public init(name: String, type: String, destination: String, state: String, position: String? = nil, lagMs: Int64 = 0, lastSync: String? = nil, error: String? = nil, consecutiveFailures: Int = 0) {
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
