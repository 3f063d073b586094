import Foundation
import Platform

/// Whom a replica client works for. Replication (the shipper, status, restore,
/// probes) shares one SFTP session per server and `HTTPClient.shared`; a
/// recovery drill gets connections of its own, so that a restore's large
/// downloads neither queue the daemon's uploads (one SFTP session is one
/// thread) nor count in the replica's request metrics, and closing them at
/// the end of the drill leaves replication's session alone.
public enum ReplicaClientPurpose: String, Sendable {
    case replication
    case drill
}

extension ReplicaClients {
    /// Drills' S3 requests: their own libcurl threads, apart from the uploads and alerts on `HTTPClient.shared`.
    static let drillHTTP = HTTPClient(pool: BlockingPool(name: "guardian-http-drill", threads: 2))

    /// Builds the client of a target for `purpose`, with standard timeouts and retries.
    public static func make(_ target: ReplicaTarget, purpose: ReplicaClientPurpose) throws -> any ReplicaClient {
        switch (purpose, target) {
        case (.replication, _), (.drill, .file):
            return try make(target)
        case (.drill, .sftp(let location)):
            return try SFTPReplicaClient(location, options: .standard, session: purpose.rawValue)
        case (.drill, .s3(let location)):
            return try S3ReplicaClient(location, options: .standard, http: drillHTTP)
        }
    }

    /// Closes what a client made for a drill holds open (its SFTP session; it
    /// reconnects if used again). Nothing to do for the other types.
    public static func close(_ client: any ReplicaClient) async {
        if let sftp = client as? SFTPReplicaClient { await sftp.disconnect() }
    }
}
