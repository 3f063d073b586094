import Platform

/// Where a replica lives. Parsed once from the configuration or a replica URL.
public enum ReplicaTarget: Sendable, Equatable {
    case file(path: String)
    case s3(S3Location)
    case sftp(SFTPLocation)

    public var typeName: String {
        switch self {
        case .file: "file"
        case .s3: "s3"
        case .sftp: "sftp"
        }
    }

    /// A URL-like destination for display: never carries a secret.
    public var destination: String {
        switch self {
        case .file(let path): "file://\(path)"
        case .s3(let s3): "s3://\(s3.bucket)/\(s3.path)"
        case .sftp(let sftp): "sftp://\(sftp.user)@\(sftp.host):\(sftp.port)\(sftp.path.hasPrefix("/") ? "" : "/")\(sftp.path)"
        }
    }
}

public struct S3Location: Sendable, Equatable {
    public var bucket: String
    public var path: String
    public var region: String
    public var endpoint: String?
    public var forcePathStyle: Bool
    public var accessKeyID: String?
    public var secretAccessKey: Secret?
    /// Off by default; only for test servers with self-signed certificates.
    public var skipVerify: Bool
    public var partSize: Int64

    public init(
        bucket: String, path: String, region: String = "us-east-1", endpoint: String? = nil,
        forcePathStyle: Bool? = nil, accessKeyID: String? = nil, secretAccessKey: Secret? = nil,
        skipVerify: Bool = false, partSize: Int64 = 5 * 1024 * 1024
    ) {
        self.bucket = bucket
        self.path = path.hasPrefix("/") ? String(path.dropFirst()) : path
        self.region = region
        self.endpoint = endpoint
        // As in Litestream: a custom endpoint implies path-style unless told otherwise.
        self.forcePathStyle = forcePathStyle ?? (endpoint != nil)
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.skipVerify = skipVerify
        self.partSize = partSize
    }
}

public struct SFTPLocation: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var path: String
    public var keyPath: String?
    /// Required: host keys are always verified.
    public var knownHosts: String?
    public var password: Secret?

    public init(host: String, port: Int = 22, user: String, path: String, keyPath: String? = nil, knownHosts: String? = nil, password: Secret? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.path = path
        self.keyPath = keyPath
        self.knownHosts = knownHosts
        self.password = password
    }
}

/// One replica of one database.
public struct ReplicaConfig: Sendable, Equatable {
    public var name: String
    public var target: ReplicaTarget
    /// How often pending LTX files are shipped. Zero means "as soon as a
    /// transaction commits" (the default for file replicas).
    public var syncInterval: Duration
    /// How long restore points are kept.
    public var retention: Duration

    public init(name: String, target: ReplicaTarget, syncInterval: Duration? = nil, retention: Duration = .seconds(72 * 3600)) {
        self.name = name
        self.target = target
        switch target {
        case .file: self.syncInterval = syncInterval ?? .zero
        case .s3, .sftp: self.syncInterval = syncInterval ?? .seconds(1)
        }
        self.retention = retention
    }
}

/// Replication settings of one database.
public struct DatabaseConfig: Sendable, Equatable {
    public var path: String
    public var replicas: [ReplicaConfig]
    /// Poll interval used when inotify is unavailable (and as a safety net).
    public var monitorInterval: Duration
    /// A PASSIVE checkpoint runs once the WAL holds at least this many bytes.
    public var checkpointSize: Int64
    /// Above this WAL size guardian briefly takes the write lock so the WAL
    /// restarts from its beginning (the file stops growing).
    public var maxWALSize: Int64
    /// How often a full snapshot is written.
    public var snapshotInterval: Duration
    /// Compaction level intervals (L1, L2, ...).
    public var compactionLevels: [Duration]
    /// How long per-transaction (L0) files stay once L1 covers them: the
    /// window of transaction-exact point-in-time restores.
    public var l0Retention: Duration

    public init(
        path: String, replicas: [ReplicaConfig], monitorInterval: Duration = .seconds(1),
        checkpointSize: Int64 = 4 * 1024 * 1024, maxWALSize: Int64 = 16 * 1024 * 1024,
        snapshotInterval: Duration = .seconds(24 * 3600),
        compactionLevels: [Duration] = [.seconds(30), .seconds(300), .seconds(3600)],
        l0Retention: Duration = .seconds(900)
    ) {
        self.l0Retention = l0Retention
        self.path = path
        self.replicas = replicas
        self.monitorInterval = monitorInterval
        self.checkpointSize = checkpointSize
        self.maxWALSize = maxWALSize
        self.snapshotInterval = snapshotInterval
        self.compactionLevels = compactionLevels
    }
}

public struct ReplicaURLError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

extension ReplicaTarget {
    /// Parses `file:///abs/path`, a bare absolute path, `s3://bucket/path` and
    /// `sftp://user@host:port/path`. S3 URLs may carry Litestream's query
    /// parameters (`endpoint`, `region`, `forcePathStyle`, `skipVerify`).
    public static func parse(url text: String) throws -> ReplicaTarget {
        if text.hasPrefix("/") { return .file(path: normalizePath(text)) }
        guard let schemeEnd = text.range(of: "://") else {
            throw ReplicaURLError(description: "replica URL \(text) must be an absolute path or start with file://, s3:// or sftp://")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        var rest = String(text[schemeEnd.upperBound...])
        var query: [String: String] = [:]
        if let q = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                query[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            rest = String(rest[..<q])
        }
        switch scheme {
        case "file":
            guard rest.hasPrefix("/") else { throw ReplicaURLError(description: "file URL \(text) needs an absolute path: file:///abs/path") }
            return .file(path: normalizePath(rest))
        case "s3":
            let parts = rest.split(separator: "/", maxSplits: 1)
            guard let bucket = parts.first, !bucket.isEmpty else { throw ReplicaURLError(description: "s3 URL \(text) has no bucket") }
            let path = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: CharacterSet(charactersIn: "/")) : ""
            guard !path.isEmpty else { throw ReplicaURLError(description: "s3 URL \(text) needs a path after the bucket (s3://bucket/path)") }
            func flag(_ names: String...) -> Bool? {
                for n in names { if let v = query[n] { return v == "" || v == "true" || v == "1" } }
                return nil
            }
            return .s3(S3Location(
                bucket: String(bucket), path: path, region: query["region"] ?? "us-east-1",
                endpoint: query["endpoint"], forcePathStyle: flag("forcePathStyle", "force-path-style"),
                skipVerify: flag("skipVerify", "skip-verify") ?? false))
        case "sftp":
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let authority = rest[..<slash]
            let path = slash < rest.endIndex ? String(rest[slash...]) : "/"
            guard let at = authority.lastIndex(of: "@") else { throw ReplicaURLError(description: "sftp URL \(text) needs a user: sftp://user@host:port/path") }
            let user = String(authority[..<at])
            let hostPort = authority[authority.index(after: at)...]
            var host = String(hostPort)
            var port = 22
            if let colon = hostPort.lastIndex(of: ":"), let p = Int(hostPort[hostPort.index(after: colon)...]) {
                host = String(hostPort[..<colon])
                port = p
            }
            guard !host.isEmpty, !user.isEmpty else { throw ReplicaURLError(description: "sftp URL \(text) needs user and host") }
            return .sftp(SFTPLocation(host: host, port: port, user: user, path: path, keyPath: query["key-path"], knownHosts: query["known-hosts"]))
        default:
            throw ReplicaURLError(description: "unsupported replica URL scheme \(scheme):// (use file, s3 or sftp)")
        }
    }

    static func normalizePath(_ path: String) -> String {
        var p = path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        return p
    }
}

import Foundation
