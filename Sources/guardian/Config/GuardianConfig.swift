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
        /// Set for a `dir:` entry while it is parsed (see `Directory`).
        var directory: DirectorySpec? = nil
    }

    struct Status: Sendable, Equatable {
        var socket: String = "/run/guardian/guardian.sock"
        /// `127.0.0.1:9464` serves Prometheus text metrics at `/metrics`
        /// (loopback only, canonical form); off when nil.
        var metrics: String?
        static let defaultMetricsAddress = "127.0.0.1:9464"
    }

    struct Log: Sendable, Equatable {
        var level: Logger.Level = .info
        var target: LogTarget = .auto
    }

    var file: String
    var dbs: [Database] = []
    /// `dbs:` entries with `dir:` (see `DirectoryEntry.swift`).
    var directories: [Directory] = []
    var disk = DiskConfig()
    var alerts: [AlertConfig] = []
    var status = Status()
    var log = Log()
    /// guardian's own state: its SQLite event log, replication positions.
    var stateDir = "/var/lib/guardian"
    /// `exec:` — the application to run as guardian's child (see `ExecChild`).
    var exec: [String]?
    /// Per `disk.logs` rule: the logrotate stanza it was imported from
    /// (`file:line`), nil for a rule written in YAML.
    var logOrigins: [String?] = []
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
            config.status.metrics = try m.optional("metrics") { try parseListenAddress($0) } ?? nil
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
        let drillDefaults = try top.optional("drills") { try parseDrill($0, base: nil, replicas: nil) }
        if let dbs = top.optional("dbs") {
            for db in try dbs.sequence() {
                var parsed = try parseDatabase(db, environment: environment, drillDefaults: drillDefaults)
                if let spec = parsed.directory {
                    parsed.directory = nil
                    config.directories.append(Directory(spec: spec, template: parsed))
                } else {
                    config.dbs.append(parsed)
                }
            }
        }
        if let disk = top.optional("disk") { config.disk = try parseDisk(disk, logOrigins: &config.logOrigins) }
        if let alerts = top.optional("alerts") {
            config.alerts = try alerts.sequence().map(parseAlert)
        }
        // Keys Litestream's own configuration has at the top level; accepted so
        // that a litestream.yml works unchanged, but without effect here.
        config.exec = try top.optional("exec") { try parseExec($0) }
        for key in ["addr", "levels", "snapshot", "l0-retention", "l0-retention-check-interval", "logging"] {
            _ = top.has(key)
        }
        try top.finish()
        try config.validate(root: root)
        return config
    }

    /// What disk cleanup must never delete: guardian's state directory
    /// (state database, staging, default drill scratch), each database's
    /// quarantine, drill scratch and file replicas, and remediation's
    /// restored copies beside each database.
    var keptPaths: KeptPaths {
        var kept = KeptPaths(directories: [stateDir])
        for db in dbs {
            kept.directories.append(Quarantine.root(for: db.path, base: db.remediation.quarantineDir))
            if let drill = db.drill { kept.directories.append(drill.scratchDirectory(stateDir: stateDir)) }
            for replica in db.replication.replicas {
                if case .file(let p) = replica.target { kept.directories.append(p) }
            }
            kept.filePrefixes.append(Quarantine.restorePrefix(for: db.path))
        }
        for d in directories {
            // The entry's own settings: quarantine beside `dir`, the replicas' base paths.
            let db = d.template
            kept.directories.append(Quarantine.root(for: d.dir + "/-", base: db.remediation.quarantineDir))
            if let drill = db.drill { kept.directories.append(drill.scratchDirectory(stateDir: stateDir)) }
            for replica in db.replication.replicas {
                if case .file(let p) = replica.target { kept.directories.append(p) }
            }
        }
        return kept
    }

    func validate(root: ConfigNode) throws {
        var seen: Set<String> = []
        for (i, db) in dbs.enumerated() where !seen.insert(db.path).inserted {
            throw ConfigError(file: file, line: root.line, key: "dbs[\(i)].path", message: "\(db.path) is listed twice")
        }
        var dirs: Set<String> = []
        for d in directories where !dirs.insert(d.dir).inserted {
            throw ConfigError(file: file, line: root.line, key: "dbs.dir", message: "\(d.dir) is listed twice")
        }
        let d = disk
        if !(d.warn < d.critical && d.critical < d.emergency) {
            throw ConfigError(file: file, line: root.line, key: "disk", message: "levels must rise: warn \(d.warn)% < critical \(d.critical)% < emergency \(d.emergency)%")
        }
        // Cleanup must not reach what guardian keeps (README: quarantined
        // files are never deleted).
        let kept = keptPaths
        for (i, rule) in d.cleanup.enumerated() {
            guard let dir = kept.conflict(cleanupPath: rule.path, recursive: rule.recursive) else { continue }
            let rules = (try? root.mapping().optional("disk")?.mapping().optional("cleanup")?.sequence()) ?? nil
            let pathNode = rules.flatMap { i < $0.count ? try? $0[i].mapping().optional("path") : nil }
            throw ConfigError(
                file: file, line: pathNode?.line ?? root.line, key: "disk.cleanup[\(i)].path",
                message: "\(rule.path) reaches \(dir), which guardian keeps (its state, quarantined files, drill scratch or a file replica); "
                    + "cleanup must never delete them: name a directory that holds only disposable files")
        }
    }

    /// `exec:` as Litestream writes it (`"app serve --port 8080"`, split like a
    /// shell would, no shell run) or as an argv list.
    static func parseExec(_ node: ConfigNode) throws -> [String] {
        let scalar: Bool
        if case .scalar = node.node { scalar = true } else { scalar = false }
        let words = scalar ? nil : try node.stringList()
        let text = scalar ? try node.string() : ""
        do {
            return try words.map(ShellWords.program) ?? ShellWords.command(text)
        } catch {
            throw node.error("\(error)")
        }
    }

    /// `status.metrics`: a loopback `HOST:PORT` (see `LoopbackAddress`),
    /// `on`/`true` for 127.0.0.1:9464, `off`/`false`/empty for none. Returns
    /// the canonical `127.0.0.1:9464` / `[::1]:9464` form, or nil.
    static func parseListenAddress(_ node: ConfigNode) throws -> String? {
        if node.isNull { return nil }
        let s = try node.string()
        switch s.lowercased() {
        case "off", "false", "no": return nil
        case "on", "true", "yes": return GuardianConfig.Status.defaultMetricsAddress
        default: break
        }
        do {
            return try LoopbackAddress.parse(s).description
        } catch {
            throw node.error(error.description)
        }
    }

    static func parseDatabase(_ node: ConfigNode, environment: [String: String], drillDefaults: DrillConfig?) throws -> Database {
        let m = try node.mapping()
        let directory = try DirectorySpec.read(m, entry: node)
        let path = try directory?.dir ?? m.required("path").absolutePath()
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
        if let levels = m.optional("compaction-levels") {
            let list = try levels.sequence()
            // L1...L8: level 9 holds the snapshots (retention keys on it).
            let most = LTXNaming.snapshotLevel - 1
            guard list.count <= most else {
                throw levels.error("\(list.count) levels; at most \(most) (L1-L\(most)): level \(LTXNaming.snapshotLevel) holds the snapshots")
            }
            replication.compactionLevels = try list.map { try $0.duration() }
        }
        if let v = try m.optional("l0-retention", { try $0.duration() }) { replication.l0Retention = v }
        if replication.maxWALSize < replication.checkpointSize {
            throw node.error("max-wal-size must not be below checkpoint-size")
        }

        var remediation = RemediationConfig()
        // Commands run without a shell: an argv list whose first item is an absolute path.
        func argv(_ n: ConfigNode) throws -> [String] {
            let list = try n.stringList()
            if case .scalar = n.node, list.first?.contains(" ") == true {
                throw n.error("must be a list (argv), e.g. [\"/usr/bin/systemctl\", \"stop\", \"app.service\"]: guardian runs commands without a shell")
            }
            guard let first = list.first, first.hasPrefix("/") else { throw n.error("the program (first item) must be an absolute path") }
            return list
        }
        func positive(_ n: ConfigNode) throws -> Duration {
            let v = try n.duration()
            guard v > .zero else { throw n.error("must be more than 0") }
            return v
        }
        if let v = try m.optional("remediate", { try $0.oneOf(RemediationMode.self) }) { remediation.mode = v }
        remediation.unit = try m.optional("unit") { try $0.string() }
        if let v = try m.optional("stop-command", argv) { remediation.stopCommand = v }
        if let v = try m.optional("start-command", argv) { remediation.startCommand = v }
        if let v = try m.optional("status-command", argv) { remediation.statusCommand = v }
        if let v = try m.optional("stop-timeout", positive) { remediation.stopTimeout = v }
        if let v = try m.optional("start-timeout", positive) { remediation.startTimeout = v }
        if let v = try m.optional("integrity-interval", positive) { remediation.integrityInterval = v }
        if let v = try m.optional("integrity-budget", positive) { remediation.integrityBudget = v }
        if let v = try m.optional("confirm-budget", positive) { remediation.confirmBudget = v }
        if let v = try m.optional("health-interval", positive) { remediation.checkpointInterval = v }
        if let v = try m.optional("wal-warn-size", { try $0.bytes() }) { remediation.walWarnSize = v }
        if let v = try m.optional("wal-critical-size", { try $0.bytes() }) { remediation.walCriticalSize = v }
        if let v = try m.optional("checkpoint-starvation", positive) { remediation.checkpointStarvation = v }
        if let n = m.optional("lag-alert") {
            // `off` (or 0) disables lag alerts.
            if try n.scalar() == "off" {
                remediation.lagAlert = nil
            } else {
                let d = try n.duration()
                remediation.lagAlert = d == .zero ? nil : d
            }
        }
        if let v = try m.optional("restore-attempts", { try $0.int(in: 1...20) }) { remediation.maxRestoreAttempts = v }
        if let v = try m.optional("cooldown", { try $0.duration() }) { remediation.cooldown = v }
        if let v = try m.optional("verify", { try $0.stringList() }) { remediation.verifyQueries = v }
        remediation.quarantineDir = try m.optional("quarantine-dir") { try $0.absolutePath() }
        if directory != nil {
            // `{name}`/`{path}` placeholders: checked with a sample value.
            for text in [remediation.unit].compactMap({ $0 }) + remediation.stopCommand + remediation.startCommand + remediation.statusCommand {
                if let p = DirectoryTemplate.unknownPlaceholders(text).first {
                    throw node.error("\(p) is not a placeholder of a directory entry (known: \(DirectoryTemplate.placeholders.joined(separator: ", ")))")
                }
            }
            let sample = DirectoryTemplate.substitute(remediation, path: path + "/tenant.db", relative: "tenant.db")
            if let problem = sample.problems().first { throw node.error(problem) }
        } else if let problem = remediation.problems().first {
            throw node.error(problem)
        }

        // Defaults from the top-level `drills:` apply to every database that has replicas.
        var drill = replicas.isEmpty ? nil : drillDefaults
        if let d = m.optional("drill") {
            if case .scalar = d.node, ["off", "false", "no"].contains(try d.scalar().lowercased()) {
                drill = nil
            } else {
                guard !replicas.isEmpty else { throw d.error("this database has no replicas to drill") }
                drill = try parseDrill(d, base: drillDefaults, replicas: replicas.map(\.name))
                if directory == nil, let n = try d.mapping().optional("sample") {
                    throw n.error("only applies to a directory entry (dir:): a database's drill covers it alone")
                }
            }
        }

        // Litestream per-database keys with no meaning in guardian.
        for key in ["meta-path", "meta-dir", "checkpoint-interval", "min-checkpoint-page-count", "busy-timeout", "truncate-page-n", "max-sync-wal-bytes", "restore-if-db-not-exists"] {
            _ = m.has(key)
        }
        try m.finish()
        return Database(replication: replication, remediation: remediation, drill: drill, directory: directory)
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
                throw (m.optional("url") ?? node).error(e.description)
            }
            if let type, type != target.typeName {
                throw (m.optional("type") ?? node).error("type \(type) does not match the URL's scheme \(target.typeName)")
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
                throw (m.optional("type") ?? node).error("\"\(type ?? "")\" must be one of file, s3, sftp")
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
        if case .s3(let s3) = target, s3.accessKeyID?.isEmpty ?? true || s3.secretAccessKey?.isEmpty ?? true {
            // Checked last, so that a mistake in the other keys is reported first.
            throw node.error("no credentials: set access-key-id/secret-access-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY)")
        }
        return ReplicaConfig(name: name, target: target, syncInterval: sync, retention: retention)
    }

    static func parseDisk(_ node: ConfigNode, logOrigins: inout [String?]) throws -> DiskConfig {
        let m = try node.mapping()
        var d = DiskConfig()
        func positive(_ n: ConfigNode) throws -> Duration {
            let v = try n.duration()
            guard v > .zero else { throw n.error("must be more than 0") }
            return v
        }
        if let v = try m.optional("interval", positive) { d.interval = v }
        if let v = try m.optional("warn", { try $0.percent() }) { d.warn = v }
        if let v = try m.optional("critical", { try $0.percent() }) { d.critical = v }
        if let v = try m.optional("emergency", { try $0.percent() }) { d.emergency = v }
        if let v = try m.optional("hysteresis", { try $0.percent() }) { d.hysteresis = v }
        if let v = try m.optional("paths", { try $0.sequence().map { try $0.absolutePath() } }) { d.paths = v }
        if let v = try m.optional("rotate-interval", positive) { d.rotateInterval = v }
        if let v = try m.optional("forecast-window", positive) { d.forecastWindow = v }
        if let v = try m.optional("forecast-warning", { try $0.duration() }) { d.forecastWarning = v }
        d.pressureMinSize = try m.optional("pressure-min-size") { try $0.bytes() }
        if let v = try m.optional("emergency-delete-archives", { try $0.bool() }) { d.emergencyDeleteArchives = v }
        if let v = try m.optional("forecast-horizon", { try $0.duration() }) { d.forecastHorizon = v }
        if let b = m.optional("ballast") {
            let bm = try b.mapping()
            let sizeNode = try bm.required("size")
            let size = try sizeNode.bytes()
            guard size > 0 else { throw sizeNode.error("must be more than 0 bytes") }
            d.ballast = BallastConfig(path: try bm.required("path").absolutePath(), size: size)
            try bm.finish()
        }
        if let logs = m.optional("logs") {
            let entries = try parseLogEntries(logs)
            d.logs = entries.map(\.rule)
            logOrigins = entries.map(\.origin)
        }
        if let cleanup = m.optional("cleanup") {
            d.cleanup = try cleanup.sequence().map { n in
                let cm = try n.mapping()
                let pathNode = try cm.required("path")
                let path = try pathNode.absolutePath()
                guard path.split(separator: "/").contains(where: { $0 != "." && $0 != ".." }) else {
                    throw pathNode.error("refusing to clean up below /; name the directory that holds disposable files")
                }
                guard !path.split(separator: "/").contains("..") else { throw pathNode.error("must not contain .. components") }
                let rule = CleanupRule(
                    path: path, pattern: try cm.optional("pattern") { try $0.string() },
                    maxAge: try cm.required("max-age").duration(),
                    recursive: try cm.optional("recursive") { try $0.bool() } ?? false)
                try cm.finish()
                return rule
            }
        }
        try m.finish()
        return d
    }

    static func parseLogRotation(_ node: ConfigNode) throws -> LogRotationConfig {
        let m = try node.mapping()
        let pathsNode = try m.required("paths")
        let paths = try pathsNode.stringList()
        for p in paths where !p.hasPrefix("/") { throw pathsNode.error("\"\(p)\" must be an absolute path or glob") }
        for p in paths { try pathsNode.noControlCharacters(p) }
        for p in paths where p.split(separator: "/").contains("..") {
            throw pathsNode.error("\"\(p)\" must not contain .. components")
        }
        var r = LogRotationConfig(paths: paths)
        // -1: keep every archive (logrotate's `rotate -1`).
        if let v = try m.optional("rotate", { try $0.int(in: -1...10000) }) { r.rotate = v }
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
        if let v = try m.optional("allowhardlink", { try $0.bool() }) { r.allowHardLink = v }
        if let su = m.optional("su") {
            // logrotate's `su USER [GROUP]`: the rule's files are rotated,
            // created and compressed as that user (see ThreadCredentials).
            let parts = try su.string().split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard (1...2).contains(parts.count) else {
                throw su.error("must be \"USER GROUP\" (e.g. \"www-data adm\")")
            }
            r.suUser = parts[0]
            r.suGroup = parts.count > 1 ? parts[1] : nil
        }
        if let create = m.optional("create") {
            // "0640 app adm", like logrotate's `create` directive; `true`
            // keeps the old file's attributes, `false` creates nothing.
            let text = try create.string()
            switch text.lowercased() {
            case "true", "yes", "on":
                r.create = true
            case "false", "no", "off":
                r.create = false
            default:
                guard let c = fileCreation(text) else {
                    throw create.error("must be \"MODE [OWNER [GROUP]]\", e.g. \"0640 app adm\", or true/false")
                }
                r.create = true
                r.createMode = c.mode
                r.createOwner = c.owner
                r.createGroup = c.group
            }
        }
        if let n = m.optional("dateformat") {
            let text = try n.string()
            if let problem = LogRotationConfig.dateFormatProblem(text) { throw n.error("\"\(text)\" \(problem)") }
            r.dateFormat = text
        }
        if let v = try m.optional("dateyesterday", { try $0.bool() }) { r.dateYesterday = v }
        if let n = m.optional("olddir") {
            let text = try n.string()
            try n.noControlCharacters(text)
            r.oldDir = text
        }
        if let n = m.optional("createolddir") {
            // "0750 app adm" like create (mode, then optional owner and group), or true/false.
            let text = try n.string()
            switch text.lowercased() {
            case "true", "yes", "on": r.createOldDir = LogRotationConfig.FileCreation()
            case "false", "no", "off": r.createOldDir = nil
            default:
                guard let c = fileCreation(text) else {
                    throw n.error("must be \"MODE [OWNER [GROUP]]\", e.g. \"0750 app adm\", or true/false")
                }
                r.createOldDir = c
            }
            if r.createOldDir != nil, r.oldDir == nil { throw n.error("needs olddir (the directory to create)") }
        }
        if let v = try m.optional("start", { try $0.int(in: 0...1_000_000) }) { r.start = v }
        if let n = m.optional("extension") {
            let text = try n.string()
            guard !text.contains("/") else { throw n.error("must not contain /") }
            try n.noControlCharacters(text)
            r.fileExtension = text
        }
        r.minAge = try m.optional("minage") { try $0.duration() }
        if let v = try m.optional("copy", { try $0.bool() }) { r.copy = v }
        // A YAML list: an argv run without a shell. A string: shell text run
        // by `/bin/sh -c TEXT logrotate_script $1 [$2]`, like logrotate.
        func script(_ n: ConfigNode) throws -> LogRotationConfig.RotationScript {
            if case .scalar = n.node { return .shell(try n.string()) }
            let argv = try n.sequence().map { try $0.string() }
            guard !argv.isEmpty else { throw n.error("must not be an empty list") }
            return .argv(argv)
        }
        r.preRotate = try m.optional("prerotate", script)
        r.postRotate = try m.optional("postrotate", script)
        r.firstAction = try m.optional("firstaction", script)
        r.lastAction = try m.optional("lastaction", script)
        if let v = try m.optional("sharedscripts", { try $0.bool() }) { r.sharedScripts = v }
        if let v = try m.optional("postrotate-timeout", { try $0.duration() }) { r.postRotateTimeout = v }
        r.compressCommand = try m.optional("compresscmd") { n -> String in
            let cmd = try n.string()
            try n.noControlCharacters(cmd)
            return cmd
        }
        r.compressOptions = try m.optional("compressoptions") { n -> [String] in
            if case .scalar = n.node {
                return try n.scalar().split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            }
            return try n.sequence().map { try $0.string() }
        }
        r.compressExt = try m.optional("compressext") { n -> String in
            let ext = try n.string()
            guard !ext.contains("/") else { throw n.error("\"\(ext)\" must not contain /") }
            try n.noControlCharacters(ext)
            return ext
        }
        if let v = try m.optional("emergency-truncate", parseEmergencyTruncate) { r.emergencyTruncate = v }
        if r.copyTruncate, r.createMode != nil {
            throw node.error("copytruncate and create exclude each other")
        }
        if r.copy, r.createMode != nil {
            throw node.error("copy and create exclude each other (copy leaves the log as it is)")
        }
        if let min = r.minSize, let max = r.maxSize, min > max {
            throw node.error("minsize (\(min)) must not be above maxsize (\(max))")
        }
        try m.finish()
        return r
    }

    /// `emergency-truncate:` of a log rule: `keep 1MB` or `off` (`auto`:
    /// keep 1 MiB on a database's filesystem).
    static func parseEmergencyTruncate(_ n: ConfigNode) throws -> LogRotationConfig.EmergencyTruncate {
        let text = try n.string().trimmingCharacters(in: .whitespaces)
        let words = text.split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first?.lowercased() {
        case "off", "false", "no": return .off
        case "auto": return .automatic
        case "keep" where words.count == 2:
            guard let bytes = Units.bytes(words[1]), bytes > 0 else {
                throw n.error("must be \"keep SIZE\" with a size above 0 (e.g. \"keep 1MB\"), \"auto\" or \"off\"")
            }
            return .keep(bytes)
        default:
            throw n.error("must be \"keep SIZE\" (e.g. \"keep 1MB\"), \"auto\" or \"off\"")
        }
    }

    /// "MODE [OWNER [GROUP]]" of `create` and `createolddir` (mode in octal), or nil.
    static func fileCreation(_ text: String) -> LogRotationConfig.FileCreation? {
        let parts = text.split(separator: " ").map(String.init)
        guard let first = parts.first, let mode = UInt16(first, radix: 8), mode <= 0o7777, parts.count <= 3 else { return nil }
        return LogRotationConfig.FileCreation(mode: mode, owner: parts.count > 1 ? parts[1] : nil, group: parts.count > 2 ? parts[2] : nil)
    }

    static func parseAlert(_ node: ConfigNode) throws -> AlertConfig {
        let m = try node.mapping()
        let kind = try m.required("type").oneOf(AlertConfig.Kind.self)
        let urlNode = try m.required("url")
        let url = try urlNode.string()
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw urlNode.error("must be an http:// or https:// URL") }
        var alert = AlertConfig(kind: kind, url: Secret(url))
        alert.name = try m.optional("name") { try $0.string() }
        let routingKey = try m.optional("routing-key") { try $0.string() }
        let secret = try m.optional("secret") { try $0.string() }
        switch kind {
        case .pagerduty:
            if secret != nil, let n = m.optional("secret") { throw n.error("a pagerduty alert takes routing-key:, not secret:") }
            guard let routingKey else { throw node.error("a pagerduty alert needs routing-key: (the integration's Events API v2 key)") }
            alert.key = Secret(routingKey)
        case .webhook:
            if routingKey != nil, let n = m.optional("routing-key") { throw n.error("a webhook alert takes secret: (the HMAC-SHA256 key), not routing-key:") }
            alert.key = secret.map(Secret.init)
        case .slack:
            for k in ["routing-key", "secret"] where m.has(k) {
                if let n = m.optional(k) { throw n.error("does not apply to a slack alert (the webhook URL is the secret)") }
            }
        }
        if let v = try m.optional("min-severity", { try $0.oneOf(AlertSeverity.self) }) { alert.minSeverity = v.rawValue }
        try m.finish()
        return alert
    }

    /// A `drills:` (defaults, `replicas` nil) or per-database `drill:` mapping.
    static func parseDrill(_ node: ConfigNode, base: DrillConfig?, replicas: [String]?) throws -> DrillConfig {
        let m = try node.mapping()
        var d = base ?? DrillConfig()
        func positive(_ n: ConfigNode) throws -> Duration {
            let v = try n.duration()
            guard v > .zero else { throw n.error("must be more than 0") }
            return v
        }
        let interval = try m.optional("interval", positive)
        let weekly = try m.optional("weekly") { n -> DrillSchedule in
            let text = try n.string()
            guard let w = DrillSchedule.parseWeekly(text) else {
                throw n.error("\"\(text)\" must be \"DAY HH:MM\" in local time, e.g. \"sun 03:00\" (days: sun mon tue wed thu fri sat)")
            }
            return w
        }
        if interval != nil, weekly != nil {
            throw node.error("interval: and weekly: exclude each other; give one schedule")
        }
        if let interval { d.schedule = .every(interval) }
        if let weekly { d.schedule = weekly }
        if let v = try m.optional("budget", positive) { d.budget = v }
        if let v = try m.optional("scratch-dir", { try $0.absolutePath() }) { d.scratchDir = v }
        if let v = try m.optional("sample", { try $0.int(in: 1...100_000) }) { d.sample = v }
        if let n = m.optional("replica") {
            let name = try n.string()
            guard let replicas else {
                throw n.error("goes in a database's drill: (replica names belong to one database)")
            }
            guard replicas.contains(name) else {
                throw n.error("no replica named \"\(name)\" in this database (its replicas: \(replicas.joined(separator: ", ")))")
            }
            d.replica = name
        }
        if let queries = m.optional("queries") {
            d.queries = try queries.sequence().map { q in
                let qm = try q.mapping()
                let sql = try qm.required("sql").string()
                let min = try qm.optional("min") { try $0.int() }.map(Int64.init)
                let within = try qm.optional("within-live") { try $0.percent() }
                try qm.finish()
                return DrillQuery(sql: sql, min: min, withinLivePercent: within)
            }
        }
        try m.finish()
        return d
    }
}

extension GuardianConfig {
    /// What one database may need free on its filesystem: its WAL growing to
    /// `max-wal-size`, and a checkpoint copying as much into the database file.
    static func headroom(for db: Database) -> Int64 { 2 * db.replication.maxWALSize }

    /// `disk:` with the databases' headroom filled in (DiskWatch does not
    /// know the replication settings): the disk guardian escalates to the
    /// critical ladder when a database's filesystem has less free.
    var diskWithHeadroom: DiskConfig {
        var d = disk
        d.databaseHeadroom = dbs.map(Self.headroom(for:)).max() ?? 0
        return d
    }
}
