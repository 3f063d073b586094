import Foundation
import Platform
import Remediate
import Replication

/// guardian itself on this host: its state directory, the status socket and
/// whether a daemon answers on it, systemd; and, per database, whether
/// remediation can stop and start the application (the unit exists, or the
/// commands are executable).
enum HostChecks {
    static let group = "guardian"

    /// What the status socket said.
    enum Daemon: Sendable {
        case answered(StatusDocument)
        case notRunning(String)
        case unusable(DoctorReport.Check)

        var document: StatusDocument? {
            if case .answered(let doc) = self { return doc }
            return nil
        }
    }

    /// Asks the daemon for its status (the same request as `guardian status`).
    static func daemon(socket path: String, timeout: Duration) async -> Daemon {
        if let early = await BlockingPool.shared.run({ socketProblem(path) }) { return early }
        let ms = Int32(clamping: max(1, timeout.milliseconds))
        do {
            let reply = try await Deadline.run(timeout) {
                try await BlockingPool.shared.run { try UnixSocketServer.request(path: path, "status", timeoutMS: ms) }
            }
            let doc = try StatusDocument.decoder().decode(StatusDocument.self, from: Data(reply))
            return .answered(doc)
        } catch let e as SystemError where e.code == ECONNREFUSED {
            return .notRunning("no daemon answers at \(path) (a stale socket: guardian stopped without removing it)")
        } catch let e as SystemError where e.code == EACCES {
            return .unusable(.warn(group, "status-socket", "not allowed to connect to \(path) as \(Identity.current.user)",
                fix: "run doctor as root or as a member of the socket's group (guardian), e.g. sudo guardian doctor"))
        } catch {
            return .unusable(.warn(group, "status-socket", "the daemon at \(path) did not answer properly: \(error)",
                fix: "see journalctl -u guardian; restart it if it hangs (systemctl restart guardian)"))
        }
    }

    /// Why nothing can answer at `path`, when that is plain without connecting. Blocking.
    private static func socketProblem(_ path: String) -> Daemon? {
        if path.utf8.count >= 108 {
            return .unusable(.fail(group, "status-socket", "status socket path \(path) is \(path.utf8.count) bytes; unix sockets allow 107",
                fix: "choose a shorter status: socket: path (default /run/guardian/guardian.sock)"))
        }
        var st = stat()
        if lstat(path, &st) != 0 {
            let dir = (path as NSString).deletingLastPathComponent
            var where_ = ""
            if access(dir, F_OK) != 0 {
                where_ = "; \(dir) does not exist (under systemd, RuntimeDirectory=guardian creates /run/guardian)"
            } else if access(dir, W_OK | X_OK) != 0 {
                where_ = "; \(dir) is not writable by \(Identity.current.user)"
            }
            return .notRunning("no daemon answers at \(path) (no socket)\(where_)")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            return .unusable(.fail(group, "status-socket", "\(path) exists and is not a socket: guardian cannot bind its status socket there",
                fix: "remove \(path) or choose another status: socket: path"))
        }
        return nil
    }

    static func run(_ config: GuardianConfig, daemon: Daemon, busAddress: String?, timeout: Duration) async -> [DoctorReport.Check] {
        var out: [DoctorReport.Check] = []
        switch daemon {
        case .answered(let doc):
            let uptime = Units.formatDuration(.milliseconds(Int64(doc.uptimeSeconds * 1000)))
            out.append(.ok(group, "daemon", "the daemon answers at \(config.status.socket): guardian \(doc.version), pid \(doc.pid), \(doc.state), up \(uptime)"))
            if FilePaths.canonical(doc.config) != FilePaths.canonical(config.file) {
                out.append(.warn(group, "daemon.config", "the daemon runs with \(doc.config), this check read \(config.file)",
                    fix: "run guardian doctor --config \(doc.config) to check what the daemon uses"))
            }
        case .notRunning(let why):
            out.append(.warn(group, "daemon", "guardian is not running: \(why)",
                fix: "start it: systemctl enable --now guardian (or guardian run --config \(config.file)); nothing is replicated or watched meanwhile"))
        case .unusable(let check):
            out.append(check)
        }
        out.append(await BlockingPool.shared.run { stateDir(config.stateDir) })
        out += await systemd(busAddress: busAddress, timeout: timeout)
        return out
    }

    static func stateDir(_ dir: String) -> DoctorReport.Check {
        let me = Identity.current.user
        var st = stat()
        if stat(dir, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                return .fail(group, "state-dir", "state-dir \(dir) is not a directory", fix: "remove it or set state-dir: to a directory")
            }
            guard access(dir, W_OK | X_OK) == 0 else {
                return .fail(group, "state-dir", "state-dir \(dir) is not writable by \(me) (owner \(Identity.name(uid: st.st_uid, gid: st.st_gid)))",
                    fix: "chown -R guardian:guardian \(dir), or run doctor as the user guardian runs as")
            }
            return .ok(group, "state-dir", "state-dir \(dir) is writable")
        }
        let parent = (dir as NSString).deletingLastPathComponent
        if errno == ENOENT, access(parent, W_OK | X_OK) == 0 {
            return .warn(group, "state-dir", "state-dir \(dir) does not exist yet (guardian creates it on start)",
                fix: "nothing to do if guardian runs as \(me); under systemd StateDirectory=guardian creates /var/lib/guardian")
        }
        return .fail(group, "state-dir", "state-dir \(dir) does not exist and cannot be created by \(me)",
            fix: "install -d -o guardian -g guardian -m 0750 \(dir)")
    }

    static func systemd(busAddress: String?, timeout: Duration) async -> [DoctorReport.Check] {
        let booted = SystemdUnitProbe.bootedWithSystemd
        var out: [DoctorReport.Check] = [booted
            ? .ok(group, "systemd", "booted with systemd")
            : .ok(group, "systemd", "this host was not booted with systemd (guardian runs without it; use stop-command:/start-command: for remediation)")]
        guard booted || busAddress != nil else { return out }
        // guardian's own unit, when the package installed it. Within the
        // check's deadline: sd-bus waits up to 10 s per call on a bus that
        // does not answer.
        let outcome: SystemdUnitProbe.Outcome
        do {
            outcome = try await Deadline.run(timeout) { await SystemdUnitProbe.check(unit: "guardian.service", busAddress: busAddress) }
        } catch {
            out.append(.warn(group, "systemd.guardian", "cannot check guardian.service: the system bus did not answer within \(Units.formatDuration(timeout))",
                fix: "check the system bus (systemctl status dbus; journalctl -u dbus): remediation through unit: needs it too"))
            return out
        }
        if case .unit(let load, let active) = outcome, load == "loaded" {
            if active == "active" {
                out.append(.ok(group, "systemd.guardian", "guardian.service is active"))
            } else {
                out.append(.warn(group, "systemd.guardian", "guardian.service is \(active)",
                    fix: "systemctl enable --now guardian; journalctl -x -u guardian says why it stopped"))
            }
        }
        return out
    }

    /// How remediation stops and starts the application of one database.
    static func appControl(_ db: GuardianConfig.Database, group: String, busAddress: String?, timeout: Duration) async -> [DoctorReport.Check] {
        let r = db.remediation
        if r.mode == .off { return [] }
        switch r.appControl {
        case .none:
            if r.mode == .auto {
                return [.warn(group, "db.app-control", "remediate: auto, but neither unit: nor stop-command:/start-command: is set: guardian will only alert",
                    fix: "add unit: app.service (systemd) or stop-command: and start-command:, or set remediate: alert-only to say so")]
            }
            return [.ok(group, "db.app-control", "remediate: \(r.mode.rawValue): guardian alerts and does not stop the application")]
        case .commands(let stop, let start, let status):
            let (problems, fine) = await BlockingPool.shared.run { () -> ([String], [String]) in
                var problems: [String] = []
                var fine: [String] = []
                for (key, argv) in [("stop-command", stop), ("start-command", start), ("status-command", status)] where !argv.isEmpty {
                    let program = argv[0]
                    var st = stat()
                    if stat(program, &st) != 0 {
                        problems.append("\(key) \(program) does not exist")
                    } else if (st.st_mode & S_IFMT) != S_IFREG {
                        problems.append("\(key) \(program) is not a regular file")
                    } else if access(program, X_OK) != 0 {
                        problems.append("\(key) \(program) is not executable by \(Identity.current.user)")
                    } else {
                        fine.append("\(key) \(program)")
                    }
                }
                return (problems, fine)
            }
            if problems.isEmpty {
                return [.ok(group, "db.app-control", "\(fine.joined(separator: ", ")): executable (not run)")]
            }
            return [.fail(group, "db.app-control", problems.joined(separator: "; ") + ": guardian cannot stop and start the application",
                fix: "install the program or fix the path (commands run without a shell, so the first item must be the program itself), and chmod +x it")]
        case .systemd(let unit):
            let outcome: SystemdUnitProbe.Outcome
            do {
                outcome = try await Deadline.run(timeout) { await SystemdUnitProbe.check(unit: unit, busAddress: busAddress ?? r.systemdBusAddress) }
            } catch {
                outcome = .failed("\(error)")
            }
            switch outcome {
            case .noBus(let why):
                return [.warn(group, "db.app-control", "cannot check unit \(unit): no system D-Bus here (\(why))",
                    fix: SystemdUnitProbe.bootedWithSystemd
                        ? "start the system bus (systemctl start dbus), then run doctor again"
                        : "this host does not run systemd: replace unit: with stop-command: and start-command: (argv lists), or guardian cannot stop the application")]
            case .noSystemd(let why):
                return [.warn(group, "db.app-control", "cannot check unit \(unit): systemd does not answer on the bus (\(why))",
                    fix: "on a host without systemd use stop-command: and start-command: instead of unit:")]
            case .failed(let why):
                return [.warn(group, "db.app-control", "cannot check unit \(unit): \(why)",
                    fix: "run doctor as root, or check that the guardian user may talk to systemd (the polkit rule /etc/polkit-1/rules.d/50-guardian.rules)")]
            case .unit(let load, let active):
                switch load {
                case "loaded":
                    if active == "active" {
                        return [.ok(group, "db.app-control", "unit \(unit) exists and is active")]
                    }
                    return [.warn(group, "db.app-control", "unit \(unit) exists but is \(active): the application is not running",
                        fix: "systemctl start \(unit); journalctl -u \(unit) says why it stopped")]
                case "not-found":
                    return [.fail(group, "db.app-control", "unit \(unit) does not exist (LoadState=not-found): guardian cannot stop and start the application",
                        fix: "fix unit: to the application's unit name (systemctl list-units --type=service), or install the unit file")]
                default:
                    return [.fail(group, "db.app-control", "unit \(unit) cannot be used (LoadState=\(load))",
                        fix: load == "masked" ? "systemctl unmask \(unit)" : "systemctl status \(unit) says what is wrong with the unit file")]
                }
            }
        }
    }
}
