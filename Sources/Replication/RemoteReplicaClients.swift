import Foundation
import Logging
import Platform

extension ReplicaClients {
    /// Builds the S3 or SFTP client of a target, with standard timeouts and retries.
    static func makeRemote(_ target: ReplicaTarget) throws -> any ReplicaClient {
        try make(target, options: .standard)
    }

    /// Builds the client of a target with these timeouts, retries and logger
    /// (the file replica has none of them).
    public static func make(_ target: ReplicaTarget, options: RemoteClientOptions) throws -> any ReplicaClient {
        switch target {
        case .s3(let location): return try S3ReplicaClient(location, options: options)
        case .sftp(let location): return try SFTPReplicaClient(location, options: options)
        case .file(let path): return FileReplicaClient(root: path)
        }
    }
}

/// Timeouts and retries of a remote replica client. One call (one write,
/// one listing...) retries transient failures within `retry`; after that it
/// throws a `.transient` `ReplicaError` and the caller keeps its position.
public struct RemoteClientOptions: Sendable {
    public var retry: RetryPolicy
    /// Time allowed to open a TCP connection (and, for SFTP, the SSH handshake).
    public var connectTimeout: Duration
    /// A request that moves no byte for this long is abandoned (hung peer).
    public var stallTimeout: Duration
    /// Receives retry notices (`replicaRequestRetrying`).
    public var logger: Logger?

    public init(retry: RetryPolicy = .standard, connectTimeout: Duration = .seconds(10), stallTimeout: Duration = .seconds(30), logger: Logger? = nil) {
        self.retry = retry
        self.connectTimeout = connectTimeout
        self.stallTimeout = stallTimeout
        self.logger = logger
    }

    public static let standard = RemoteClientOptions()
}

/// Remote clients count the requests they send (each retry counts), so
/// status and the benchmark can show what replication costs.
public protocol ReplicaRequestCounting: Sendable {
    var requestCount: Int { get }
}
