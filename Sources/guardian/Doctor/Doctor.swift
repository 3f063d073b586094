import Foundation
import Platform
import Remediate
import Replication

/// `guardian doctor`: checks a host end to end against its configuration and
/// says what to fix. The configuration, guardian on this host (daemon, state
/// directory, status socket, systemd), each database (file, header, WAL mode,
/// WAL size, owners, how the application is stopped and started) and each of
/// its replicas (reachable, credentials, writable, holdings, lag), the disks
/// and the alert destinations. Sections run concurrently, replicas too; every
/// check has its own deadline and blocking calls run on `BlockingPool`.
/// Nothing is changed on the host except a probe object per replica, which is
/// deleted again, and no alert is sent unless `sendTestAlert`.
struct Doctor: Sendable {
    struct Options: Sendable {
        /// Each check's time limit.
        var timeout: Duration = .seconds(10)
        /// Send one test trigger and resolve to every alert destination.
        var sendTestAlert = false
        /// systemd's D-Bus address; nil = the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured).
        var busAddress: String?
        var host: String = Alerter.hostName()
    }

    let config: GuardianConfig
    var options = Options()

    static let configGroup = "configuration"

    func run() async -> DoctorReport {
        var checks: [DoctorReport.Check] = [configSummary]
        if config.dbs.isEmpty, config.directories.isEmpty {
            checks.append(.warn(Self.configGroup, "config.dbs", "no databases are configured: guardian has nothing to protect",
                fix: "add dbs: with the path: of the application's database and its replicas:"))
        }
        let daemon = await HostChecks.daemon(socket: config.status.socket, timeout: options.timeout)
        let janitor = ProbeJanitor()
        let config = config, options = options
        let sections = await withTaskGroup(of: (Int, [DoctorReport.Check]).self) { group in
            group.addTask { (0, await HostChecks.run(config, daemon: daemon, busAddress: options.busAddress, timeout: options.timeout)) }
            for (i, db) in config.dbs.enumerated() {
                group.addTask { (1 + i, await databaseSection(db, daemon: daemon.document, janitor: janitor)) }
            }
            group.addTask {
                let checks: [DoctorReport.Check]
                do {
                    checks = try await Deadline.run(options.timeout) { await BlockingPool.shared.run { DiskChecks.run(config) } }
                } catch {
                    checks = [.fail(DiskChecks.group, "disk.level", "measuring the filesystems took longer than \(Units.formatDuration(options.timeout)) (a hung network filesystem?)",
                        fix: "check the mounts holding guardian's paths (mount, dmesg)")]
                }
                return (1 + config.dbs.count, checks)
            }
            group.addTask {
                (2 + config.dbs.count, await AlertChecks.run(config.alerts, sendTest: options.sendTestAlert, host: options.host, timeout: options.timeout))
            }
            var results: [(Int, [DoctorReport.Check])] = []
            for await r in group { results.append(r) }
            return results.sorted { $0.0 < $1.0 }.flatMap(\.1)
        }
        checks += sections
        let unfinished = await janitor.drain(timeout: options.timeout)
        if unfinished > 0 {
            checks.append(.warn(HostChecks.group, "replica.cleanup", "\(unfinished) probe object delete\(unfinished == 1 ? " was" : "s were") still running when doctor stopped waiting",
                fix: "the next doctor run removes probe objects older than 10 minutes from the replicas' \(ReplicaProbe.directory)/"))
        }
        return report(checks)
    }

    /// The report of a configuration that does not load: one failure, with
    /// the `file:line: key: what is wrong` of the parser, through `redactor`
    /// like every report (the message may quote a value; see
    /// `redactor(unloadedText:environment:)`).
    static func configFailure(path: String, message: String, host: String = Alerter.hostName(), redactor: Redactor = Redactor()) -> DoctorReport {
        var fix = "correct the line named above; `guardian check-config --config \(path)` shows what guardian understands"
        if message.hasPrefix("\(path):0: ") {
            fix = "check the path (--config PATH; the default is \(GuardianConfig.defaultPath)) and that \(Identity.current.user) may read the file"
        }
        if message.contains("${") || message.localizedCaseInsensitiveContains("environment") || message.localizedCaseInsensitiveContains("variable") {
            fix += "; variables come from the environment: pass --environment-file /etc/default/guardian (where the service keeps its secrets) or export them"
        }
        return DoctorReport(
            version: GuardianVersion.string, host: host, config: path, checkedAt: Timestamps.iso8601(Date()),
            checks: [.fail(configGroup, "config", message, fix: fix)]
        ).redacted(redactor)
    }

    /// The secrets of a configuration that does not load, as far as they can
    /// be told without parsing it: the values written after a secret key
    /// (`secret-access-key:`, `password:`, `secret:`, `routing-key:`, an
    /// http(s) `url:`) and of the environment variables such a value refers
    /// to (`${NAME}`, from the environment files too), and of the variables
    /// guardian reads secrets from; `access-key-id:` values are shortened. A
    /// message that quotes one (a secret pasted on the wrong line) shows
    /// `******` instead.
    static func redactor(unloadedText text: String, environment: [String: String]) -> Redactor {
        var r = Redactor()
        for name in ["AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY", "GUARDIAN_SFTP_PASSWORD"] {
            if let v = environment[name] { r.secrets.append(v) }
        }
        for name in ["AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID"] {
            if let v = environment[name] { r.keyIDs.append(v) }
        }
        /// The value itself when it refers to no variable, else the variables' values.
        func values(_ value: String) -> [String] {
            guard value.contains("${") else { return [value] }
            return value.components(separatedBy: "${").dropFirst().compactMap { part in
                let name = part.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
                return environment[String(name)]
            }
        }
        let secretKeys: Set<String> = ["secret-access-key", "password", "secret", "routing-key"]
        for line in text.split(separator: "\n") {
            var rest = line.trimmingCharacters(in: .whitespaces)
            if rest.hasPrefix("- ") { rest = rest.dropFirst(2).trimmingCharacters(in: .whitespaces) }
            guard let colon = rest.range(of: ":") else { continue }
            let key = String(rest[..<colon.lowerBound])
            var value = rest[colon.upperBound...].trimmingCharacters(in: .whitespaces)
            if let q = value.first, q == "\"" || q == "'" {
                let inner = value.dropFirst()
                guard let end = inner.firstIndex(of: q) else { continue }
                value = String(inner[..<end])
            } else if let comment = value.range(of: " #") {
                value = value[..<comment.lowerBound].trimmingCharacters(in: .whitespaces)
            }
            guard !value.isEmpty else { continue }
            if secretKeys.contains(key) {
                r.secrets += values(value)
            } else if key == "access-key-id" {
                r.keyIDs += values(value)
            } else if key == "url", value.hasPrefix("http://") || value.hasPrefix("https://") {
                r.secrets += values(value)
                if !value.contains("${"), let path = URLComponents(string: value)?.path, path.count > 1 { r.secrets.append(path) }
            }
        }
        return r
    }

    private var configSummary: DoctorReport.Check {
        let replicas = config.dbs.reduce(0) { $0 + $1.replication.replicas.count }
        func n(_ count: Int, _ word: String) -> String { "\(count) \(word)\(count == 1 ? "" : "s")" }
        let dirs = config.directories.isEmpty ? "" : ", \(n(config.directories.count, "directory entry").replacingOccurrences(of: "entrys", with: "entries"))"
        return .ok(Self.configGroup, "config", "\(config.file) is valid: \(n(config.dbs.count, "database"))\(dirs), \(n(replicas, "replica")), \(n(config.alerts.count, "alert destination"))")
    }

    private func databaseSection(_ db: GuardianConfig.Database, daemon: StatusDocument?, janitor: ProbeJanitor) async -> [DoctorReport.Check] {
        let group = DatabaseChecks.groupName(db.path)
        var out: [DoctorReport.Check]
        var facts = DatabaseChecks.Facts()
        do {
            (out, facts) = try await Deadline.run(options.timeout) { await BlockingPool.shared.run { DatabaseChecks.run(db, group: group) } }
        } catch {
            out = [.fail(group, "db.exists", "checking \(db.path) took longer than \(Units.formatDuration(options.timeout)) (a hung network filesystem?)",
                fix: "check the filesystem holding the database (mount, dmesg)")]
        }
        let live = daemon?.databases.first { $0.path == db.path }
        if let daemon {
            if let live {
                if live.state == "error" {
                    out.append(.fail(group, "db.daemon", "the running daemon cannot replicate it: \(live.error ?? "no detail")",
                        fix: "see journalctl -u guardian; the checks above usually say why"))
                } else if live.state == "open" {
                    out.append(.ok(group, "db.daemon", "replicated by the running daemon (TXID \(live.txid ?? "-"))"))
                }
            } else {
                out.append(.warn(group, "db.daemon", "the running daemon (config \(daemon.config)) does not replicate this database",
                    fix: "reload it with this configuration: systemctl reload guardian (or kill -HUP its pid)"))
            }
        }
        out += await HostChecks.appControl(db, group: group, busAddress: options.busAddress, timeout: options.timeout)
        if db.replication.replicas.isEmpty {
            out.append(.warn(group, "db.replicas", "no replicas: there is nothing to restore this database from",
                fix: "add replicas: (a file directory on another disk, s3 or sftp)"))
            return out
        }
        let facts_ = facts
        let options = options
        let replicaChecks = await withTaskGroup(of: (Int, [DoctorReport.Check]).self) { tasks in
            for (i, replica) in db.replication.replicas.enumerated() {
                let checks = ReplicaChecks(
                    replica: replica, database: db, facts: facts_, daemon: live, timeout: options.timeout, host: options.host, janitor: janitor)
                tasks.addTask { (i, await checks.run()) }
            }
            var results: [(Int, [DoctorReport.Check])] = []
            for await r in tasks { results.append(r) }
            return results.sorted { $0.0 < $1.0 }.flatMap(\.1)
        }
        return out + replicaChecks
    }

    private func report(_ checks: [DoctorReport.Check]) -> DoctorReport {
        DoctorReport(
            version: GuardianVersion.string, host: options.host, config: config.file, checkedAt: Timestamps.iso8601(Date()), checks: checks
        ).redacted(Self.redactor(config))
    }

    /// Every secret value of the configuration.
    static func redactor(_ config: GuardianConfig) -> Redactor {
        var r = Redactor()
        for db in config.dbs {
            for replica in db.replication.replicas {
                switch replica.target {
                case .s3(let s3):
                    if let s = s3.secretAccessKey?.value { r.secrets.append(s) }
                    if let id = s3.accessKeyID { r.keyIDs.append(id) }
                case .sftp(let s):
                    if let p = s.password?.value { r.secrets.append(p) }
                case .file: break
                }
            }
        }
        for a in config.alerts { r.add(a) }
        return r
    }
}
