import DiskWatch
import Foundation
import Logging
import Platform
import Remediate
import Replication

/// guardian's whole configuration, parsed once from YAML into typed,
/// `Sendable` values. Each module owns the types of its own section; this
/// file only maps YAML keys onto them. Defaults live in those types.
struct GuardianConfig: Sendable, Equatable {
    static let defaultPath = "/etc/guardian/guardian.yml"

    struct Database: Sendable, Equatable {
        var replication: DatabaseConfig
        var remediation: RemediationConfig
        var drill: DrillConfig?
        var path: String { replication.path }
    }

    struct Status: Sendable, Equatable {
        var socket: String = "/run/guardian/guardian.sock"
        /// `127.0.0.1:9090` serves Prometheus text metrics; off when nil.
        var metrics: String?
    }

    struct Log: Sendable, Equatable {
        var level: Logger.Level = .info
        var target: LogTarget = .auto
    }

    var file: String
    var dbs: [Database] = []
    var disk = DiskConfig()
    var alerts: [AlertConfig] = []
    var status = Status()
    var log = Log()
    /// guardian's own state: its SQLite event log, replication positions.
    var stateDir = "/var/lib/guardian"
}

extension GuardianConfig {
    /// Reads and parses a configuration file.
    static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> GuardianConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: 0, key: "", message: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: 0, key: "", message: "the file is not UTF-8 text")
        }
        return try parse(text: text, file: path, environment: environment)
    }

    static func parse(text: String, file: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> GuardianConfig {
        let expanded = try ConfigText.expand(text, file: file, environment: environment)
        let root = try ConfigText.parse(expanded, file: file)
        let top = try root.mapping()
        var config = GuardianConfig(file: file)

        if let dir = try top.optional("state-dir", { try $0.absolutePath() }) { config.stateDir = dir }
        if let status = top.optional("status") {
            let m = try status.mapping()
            if let s = try m.optional("socket", { try $0.absolutePath() }) { config.status.socket = s }
            config.status.metrics = try m.optional("metrics") { try parseListenAddress($0) }
            try m.finish()
        }
        if let log = top.optional("log") {
            let m = try log.mapping()
            if let level = try m.optional("level", { n -> Logger.Level in
                let s = try n.scalar()
                guard let l = Logger.Level(rawValue: s.lowercased()) else {
                    throw n.error("\"\(s)\" must be one of trace, debug, info, notice, warning, error, critical")
                }
                return l
            }) { config.log.level = level }
            if let target = try m.optional("target", { try $0.oneOf(LogTarget.self) }) { config.log.target = target }
            try m.finish()
        }
        let drillDefaults = try top.optional("drills") { try parseDrill($0, base: nil) }
        if let dbs = top.optional("dbs") {
            for db in try dbs.sequence() {
                config.dbs.append(try parseDatabase(db, environment: environment, drillDefaults: drillDefaults))
            }
        }
        if let disk = top.optional("disk") { config.disk = try parseDisk(disk) }
        if let alerts = top.optional("alerts") {
            config.alerts = try alerts.sequence().map(parseAlert)
        }
        // Keys Litestream's own configuration has at the top level; accepted so
        // that a litestream.yml works unchanged, but without effect here.
        for key in ["addr", "levels", "snapshot", "l0-retention", "l0-retention-check-interval", "logging", "exec"] {
            _ = top.has(key)
        }
        try top.finish()
        try config.validate(root: root)
        return config
    }

    func validate(root: ConfigNode) throws {
        var seen: Set<String> = []
        for (i, db) in dbs.enumerated() where !seen.insert(db.path).inserted {
            throw ConfigError(file: file, line: root.line, key: "dbs[\(i)].path", message: "\(db.path) is listed twice")
        }
        let d = disk
        if !(d.warn < d.critical && d.critical < d.emergency) {
            throw ConfigError(file: file, line: root.line, key: "disk", message: "levels must rise: warn \(d.warn)% < critical \(d.critical)% < emergency \(d.emergency)%")
        }
    }

    static func parseListenAddress(_ node: ConfigNode) throws -> String {
        let s = try node.string()
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else {
            throw node.error("\"\(s)\" must be HOST:PORT, e.g. 127.0.0.1:9090")
        }
        return s
    }

    static func parseDatabase(_ node: ConfigNode, environment: [String: String], drillDefaults: DrillConfig?) throws -> Database {
        let m = try node.mapping()
        let path = try m.required("path").absolutePath()
        let defaultSync = try m.optional("sync-interval") { try $0.duration() }
        let defaultRetention = try m.optional("retention") { try $0.duration() } ?? .seconds(72 * 3600)
        var replicas: [ReplicaConfig] = []
        if let list = m.optional("replicas") {
            for r in try list.sequence() {
                replicas.append(try parseReplica(r, index: replicas.count, defaultSync: defaultSync, defaultRetention: defaultRetention, environment: environment))
            }
        }
        if let single = m.optional("replica") {
            replicas.append(try parseReplica(single, index: replicas.count, defaultSync: defaultSync, defaultRetention: defaultRetention, environment: environment))
        }
        var names: Set<String> = []
        for r in replicas where !names.insert(r.name).inserted {
            throw node.error("two replicas are named \(r.name); give each a distinct name:")
        }
        var replication = DatabaseConfig(path: path, replicas: replicas)
        if let v = try m.optional("monitor-interval", { try $0.duration() }) { replication.monitorInterval = v }
        if let v = try m.optional("checkpoint-size", { try $0.bytes() }) { replication.checkpointSize = v }
        if let v = try m.optional("max-wal-size", { try $0.bytes() }) { replication.maxWALSize = v }
        if let v = try m.optional("snapshot-interval", { try $0.duration() }) { replication.snapshotInterval = v }
        if let v = try m.optional("compaction-levels", { try $0.sequence().map { try $0.duration() } }) { replication.compactionLevels = v }
        if replication.maxWALSize < replication.checkpointSize {
            throw node.error("max-wal-size must not be below checkpoint-size")
        }

        var remediation = RemediationConfig()
        if let v = try m.optional("remediate", { try $0.oneOf(RemediationMode.self) }) { remediation.mode = v }
        remediation.unit = try m.optional("unit") { try $0.string() }
        if let v = try m.optional("stop-command", { try $0.stringList() }) { remediation.stopCommand = v }
        if let v = try m.optional("start-command", { try $0.stringList() }) { remediation.startCommand = v }
        if let v = try m.optional("integrity-interval", { try $0.duration() }) { remediation.integrityInterval = v }
        if let v = try m.optional("integrity-budget", { try $0.duration() }) { remediation.integrityBudget = v }
        if let v = try m.optional("health-interval", { try $0.duration() }) { remediation.checkpointInterval = v }
        if let v = try m.optional("cooldown", { try $0.duration() }) { remediation.cooldown = v }
        if let v = try m.optional("verify", { try $0.stringList() }) { remediation.verifyQueries = v }
        remediation.quarantineDir = try m.optional("quarantine-dir") { try $0.absolutePath() }

        var drill = drillDefaults
        if let d = m.optional("drill") { drill = try parseDrill(d, base: drillDefaults) }

        // Litestream per-database keys with no meaning in guardian.
        for key in ["meta-path", "checkpoint-interval", "min-checkpoint-page-count", "busy-timeout", "truncate-page-n", "max-sync-wal-bytes", "restore-if-db-not-exists"] {
            _ = m.has(key)
        }
        try m.finish()
        return Database(replication: replication, remediation: remediation, drill: drill)
    }

    static func parseReplica(
        _ node: ConfigNode, index: Int, defaultSync: Duration?, defaultRetention: Duration, environment: [String: String]
    ) throws -> ReplicaConfig {
        let m = try node.mapping()
        let url = try m.optional("url") { try $0.string() }
        let type = try m.optional("type") { try $0.string() }
        var target: ReplicaTarget
        if let url {
            do { target = try ReplicaTarget.parse(url: url) } catch let e as ReplicaURLError {
                throw m.optional("url")!.error(e.description)
            }
            if let type, type != target.typeName {
                throw m.optional("type")!.error("type \(type) does not match the URL's scheme \(target.typeName)")
            }
        } else {
            switch type ?? "file" {
            case "file":
                target = .file(path: try m.required("path").absolutePath())
            case "s3":
                let bucket = try m.required("bucket").string()
                let path = try m.optional("path") { try $0.string() } ?? ""
                guard !path.isEmpty else { throw node.error("an s3 replica needs a non-empty path: (the key prefix inside the bucket)") }
                target = .s3(S3Location(bucket: bucket, path: path))
            case "sftp":
                let hostNode = try m.required("host")
                var host = try hostNode.string()
                var port = 22
                if let colon = host.lastIndex(of: ":") {
                    guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else {
                        throw hostNode.error("\"\(host)\" must be HOST or HOST:PORT")
                    }
                    port = p
                    host = String(host[..<colon])
                }
                target = .sftp(SFTPLocation(host: host, port: port, user: try m.required("user").string(), path: try m.required("path").string()))
            default:
                throw m.optional("type")!.error("\"\(type ?? "")\" must be one of file, s3, sftp")
            }
        }
        switch target {
        case .file: break
        case .s3(var s3):
            if let v = try m.optional("region", { try $0.string() }) { s3.region = v }
            if let v = try m.optional("endpoint", { try $0.string() }) {
                s3.endpoint = v
                s3.forcePathStyle = true
            }
            if let v = try m.optional("force-path-style", { try $0.bool() }) { s3.forcePathStyle = v }
            if let v = try m.optional("skip-verify", { try $0.bool() }) { s3.skipVerify = v }
            if let v = try m.optional("part-size", { try $0.bytes() }) { s3.partSize = max(5 * 1024 * 1024, v) }
            s3.accessKeyID = try m.optional("access-key-id") { try $0.scalar() }.flatMap { $0.isEmpty ? nil : $0 }
                ?? environment["AWS_ACCESS_KEY_ID"] ?? environment["LITESTREAM_ACCESS_KEY_ID"]
            s3.secretAccessKey = (try m.optional("secret-access-key") { try $0.scalar() }.flatMap { $0.isEmpty ? nil : $0 }
                ?? environment["AWS_SECRET_ACCESS_KEY"] ?? environment["LITESTREAM_SECRET_ACCESS_KEY"]).map(Secret.init)
            target = .s3(s3)
        case .sftp(var sftp):
            if let v = try m.optional("key-path", { try $0.absolutePath() }) { sftp.keyPath = v }
            if let v = try m.optional("known-hosts", { try $0.absolutePath() }) { sftp.knownHosts = v }
            if let v = try m.optional("password", { try $0.scalar() }), !v.isEmpty { sftp.password = Secret(v) }
            if sftp.password == nil, let v = environment["GUARDIAN_SFTP_PASSWORD"], !v.isEmpty { sftp.password = Secret(v) }
            if sftp.knownHosts == nil {
                throw node.error("an sftp replica needs known-hosts: (host keys are always verified; create it with ssh-keyscan)")
            }
            if sftp.keyPath == nil, sftp.password == nil {
                throw node.error("an sftp replica needs key-path: or a password (GUARDIAN_SFTP_PASSWORD)")
            }
            target = .sftp(sftp)
        }
        // Keys that only apply to one type were read above; read the rest so
        // that they are not "unknown", then refuse them on the wrong type.
        let s3Keys = ["bucket", "region", "endpoint", "force-path-style", "access-key-id", "secret-access-key", "skip-verify", "part-size"]
        let sftpKeys = ["host", "user", "key-path", "known-hosts", "password"]
        let foreign: [String]
        switch target {
        case .file: foreign = s3Keys + sftpKeys
        case .s3: foreign = sftpKeys
        case .sftp: foreign = s3Keys.filter { $0 != "bucket" }
        }
        for key in foreign where m.has(key) {
            if let n = m.optional(key) { throw n.error("does not apply to a \(target.typeName) replica") }
        }
        let name = try m.optional("name") { try $0.string() } ?? (index == 0 ? target.typeName : "\(target.typeName)\(index)")
        let sync = try m.optional("sync-interval") { try $0.duration() } ?? defaultSync
        let retention = try m.optional("retention") { try $0.duration() } ?? defaultRetention
        _ = m.has("path")
        for key in ["snapshot-interval", "retention-check-interval", "validation-interval", "sign-payload", "require-content-md5", "concurrency", "storage-class", "max-sync-ltx-files", "auto-recover"] {
            _ = m.has(key)
        }
        try m.finish()
        return ReplicaConfig(name: name, target: target, syncInterval: sync, retention: retention)
    }

    static func parseDisk(_ node: ConfigNode) throws -> DiskConfig {
        let m = try node.mapping()
        var d = DiskConfig()
        if let v = try m.optional("interval", { try $0.duration() }) { d.interval = v }
        if let v = try m.optional("warn", { try $0.percent() }) { d.warn = v }
        if let v = try m.optional("critical", { try $0.percent() }) { d.critical = v }
        if let v = try m.optional("emergency", { try $0.percent() }) { d.emergency = v }
        if let v = try m.optional("hysteresis", { try $0.percent() }) { d.hysteresis = v }
        if let v = try m.optional("paths", { try $0.sequence().map { try $0.absolutePath() } }) { d.paths = v }
        if let b = m.optional("ballast") {
            let bm = try b.mapping()
            d.ballast = BallastConfig(path: try bm.required("path").absolutePath(), size: try bm.required("size").bytes())
            try bm.finish()
        }
        if let logs = m.optional("logs") { d.logs = try logs.sequence().map(parseLogRotation) }
        if let cleanup = m.optional("cleanup") {
            d.cleanup = try cleanup.sequence().map { n in
                let cm = try n.mapping()
                let rule = CleanupRule(
                    path: try cm.required("path").absolutePath(), pattern: try cm.optional("pattern") { try $0.string() },
                    maxAge: try cm.required("max-age").duration())
                try cm.finish()
                return rule
            }
        }
        try m.finish()
        return d
    }

    static func parseLogRotation(_ node: ConfigNode) throws -> LogRotationConfig {
        let m = try node.mapping()
        let paths = try m.required("paths").stringList()
        for p in paths where !p.hasPrefix("/") { throw m.optional("paths")!.error("\"\(p)\" must be an absolute path or glob") }
        var r = LogRotationConfig(paths: paths)
        if let v = try m.optional("rotate", { try $0.int(in: 0...10000) }) { r.rotate = v }
        r.size = try m.optional("size") { try $0.bytes() }
        r.minSize = try m.optional("minsize") { try $0.bytes() }
        r.maxSize = try m.optional("maxsize") { try $0.bytes() }
        r.maxAge = try m.optional("maxage") { try $0.duration() }
        r.frequency = try m.optional("frequency") { try $0.oneOf(LogRotationConfig.Frequency.self) }
        if let v = try m.optional("compress", { try $0.bool() }) { r.compress = v }
        if let v = try m.optional("delaycompress", { try $0.bool() }) { r.delayCompress = v }
        if let v = try m.optional("dateext", { try $0.bool() }) { r.dateExt = v }
        if let v = try m.optional("missingok", { try $0.bool() }) { r.missingOK = v }
        if let v = try m.optional("notifempty", { try $0.bool() }) { r.notIfEmpty = v }
        if let v = try m.optional("copytruncate", { try $0.bool() }) { r.copyTruncate = v }
        if let create = m.optional("create") {
            // "0640 app adm", like logrotate's `create` directive.
            let parts = try create.string().split(separator: " ").map(String.init)
            guard let first = parts.first, let mode = UInt16(first, radix: 8), parts.count <= 3 else {
                throw create.error("must be \"MODE [OWNER [GROUP]]\", e.g. \"0640 app adm\"")
            }
            r.createMode = mode
            r.createOwner = parts.count > 1 ? parts[1] : nil
            r.createGroup = parts.count > 2 ? parts[2] : nil
        }
        if let v = try m.optional("postrotate", { try $0.stringList() }) { r.postRotate = v }
        if let v = try m.optional("postrotate-timeout", { try $0.duration() }) { r.postRotateTimeout = v }
        if r.copyTruncate, r.createMode != nil {
            throw node.error("copytruncate and create exclude each other")
        }
        try m.finish()
        return r
    }

    static func parseAlert(_ node: ConfigNode) throws -> AlertConfig {
        let m = try node.mapping()
        let kind = try m.required("type").oneOf(AlertConfig.Kind.self)
        let urlNode = try m.required("url")
        let url = try urlNode.string()
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw urlNode.error("must be an http:// or https:// URL") }
        var alert = AlertConfig(kind: kind, url: Secret(url))
        if let k = try m.optional("routing-key", { try $0.string() }) ?? m.optional("secret", { try $0.string() }) {
            alert.key = Secret(k)
        }
        if kind == .pagerduty, alert.key == nil { throw node.error("a pagerduty alert needs routing-key:") }
        if let v = try m.optional("min-severity", { try $0.string() }) {
            guard ["info", "warning", "critical"].contains(v) else { throw m.optional("min-severity")!.error("must be info, warning or critical") }
            alert.minSeverity = v
        }
        try m.finish()
        return alert
    }

    static func parseDrill(_ node: ConfigNode, base: DrillConfig?) throws -> DrillConfig {
        let m = try node.mapping()
        var d = base ?? DrillConfig()
        if let v = try m.optional("interval", { try $0.duration() }) { d.interval = v }
        if let v = try m.optional("budget", { try $0.duration() }) { d.budget = v }
        if let v = try m.optional("scratch-dir", { try $0.absolutePath() }) { d.scratchDir = v }
        if let queries = m.optional("queries") {
            d.queries = try queries.sequence().map { q in
                let qm = try q.mapping()
                let sql = try qm.required("sql").string()
                var expect = DrillQuery.Expectation.greaterThan(0)
                if let v = try qm.optional("min", { try $0.int() }) { expect = .greaterThan(Int64(v) - 1) }
                if let v = try qm.optional("within-live", { try $0.percent() }) { expect = .withinPercentOfLive(v) }
                try qm.finish()
                return DrillQuery(sql: sql, expect: expect)
            }
        }
        try m.finish()
        return d
    }
}
