import Foundation
import Platform
import Replication

/// The checks of one replica, in the order a failure makes the next ones
/// pointless: reachable (DNS, TCP; for a file replica: the directory) →
/// usable (TLS, SSH host key, credentials, bucket or directory: a listing of
/// every level) → writable (a probe object written, read back and deleted,
/// see `ReplicaProbe`) → what it holds and how far it is behind the live
/// database. Every step has its own deadline; nothing is retried.
struct ReplicaChecks: Sendable {
    let replica: ReplicaConfig
    let database: GuardianConfig.Database
    let facts: DatabaseChecks.Facts
    /// The running daemon's view of this database, when a daemon answered.
    let daemon: DatabaseStatus?
    let timeout: Duration
    let host: String
    let janitor: ProbeJanitor
    var now: @Sendable () -> Date = { Date() }

    var group: String { Self.groupName(replica, database: database.path) }

    static func groupName(_ replica: ReplicaConfig, database: String) -> String {
        "replica \(replica.name) of \(database) (\(replica.target.destination))"
    }

    func run() async -> [DoctorReport.Check] {
        var out: [DoctorReport.Check] = []
        let client: any ReplicaProbing
        do {
            let options = RemoteClientOptions(retry: .none, connectTimeout: timeout, stallTimeout: timeout)
            guard let made = try ReplicaClients.make(replica.target, options: options) as? any ReplicaProbing else {
                return [.fail(group, "replica.config", "this replica type cannot be probed", fix: "report this as a bug")]
            }
            client = made
        } catch {
            return [.fail(group, "replica.config", "\(error)", fix: configFix)]
        }

        // 1. Reachable.
        if let endpoint = client.networkEndpoint {
            let timeout = timeout
            let outcome: NetProbe.Outcome
            do {
                outcome = try await Deadline.run(timeout) {
                    await BlockingPool.shared.run { NetProbe.connect(host: endpoint.host, port: endpoint.port, timeout: timeout) }
                }
            } catch {
                outcome = .timedOut(address: "\(endpoint.host):\(endpoint.port)")
            }
            let check = Self.reachability(outcome, host: endpoint.host, port: endpoint.port, group: group, check: "replica.reach", timeout: timeout)
            out.append(check)
            if check.status == .fail { return out }
        }
        // (For SFTP this logs in: host key and credentials are checked here.)
        let rootCheck = if case .file = replica.target { "replica.directory" } else { "replica.credentials" }
        guard let rootState = await step({ try await client.rootExists() }, into: &out, check: rootCheck) else { return out }
        if rootState == false {
            out.append(missingDirectory)
            return out
        }
        if rootState == true, case .file(let path) = replica.target {
            out.append(.ok(group, "replica.directory", "directory \(path) exists"))
        }

        // 2. Usable: TLS, host key, credentials, bucket.
        let started = ContinuousClock.now
        guard await step({ try await client.checkAccess() }, into: &out, check: "replica.credentials") != nil else { return out }
        out.append(.ok(group, "replica.credentials", "\(accessDescription) (\(Units.formatDuration(ContinuousClock.now - started)))"))

        // 3. Writable.
        let (probeChecks, writable) = await probe(client)
        out += probeChecks
        if !writable { return out }

        // 4. What it holds, and how far behind the live database it is.
        guard let files = await step({
            var all: [LTXFileInfo] = []
            for level in LTXNaming.allLevels { all += try await client.listFiles(level: level, exactTimestamps: false) }
            return all
        }, into: &out, check: "replica.holdings") else { return out }
        out += holdings(files)
        return out
    }

    // MARK: - Steps

    /// Runs one step under the deadline; a failure becomes a classified check.
    private func step<T: Sendable>(_ body: @escaping @Sendable () async throws -> T, into out: inout [DoctorReport.Check], check: String, writing: Bool = false) async -> T? {
        do {
            return try await Deadline.run(timeout, body)
        } catch {
            out.append(classify(error, check: check, writing: writing))
            return nil
        }
    }

    /// The probe's checks, and whether writing works.
    private func probe(_ client: any ReplicaProbing) async -> ([DoctorReport.Check], Bool) {
        var out: [DoctorReport.Check] = []
        let name = ReplicaProbe.makeName()
        let bytes = ReplicaProbe.contents(name: name, host: host, at: now())
        let started = ContinuousClock.now
        var mayExist = false
        var readBack: [UInt8]?
        do {
            readBack = try await Deadline.run(timeout) {
                try await client.writeProbe(name: name, bytes: bytes)
                return try await client.readProbe(name: name)
            }
            mayExist = true
        } catch {
            // Refused outright: nothing was stored. Anything else (a timeout,
            // a cut connection) may have stored it: delete to be sure.
            if let e = error as? ReplicaError, e.cause != nil, e.cause != .timeout, e.cause != .unreachable {
                mayExist = false
            } else {
                mayExist = true
            }
            out.append(classify(error, check: "replica.write", writing: true))
        }
        if mayExist {
            // Detached: neither this check's deadline nor a cancellation stops the
            // delete; the doctor waits for stragglers before it exits.
            let deletion = await janitor.delete { try await client.deleteProbe(name: name) }
            do {
                try await Deadline.run(timeout) { try await deletion.value }
            } catch {
                out.append(.fail(group, "replica.delete", "cannot delete the probe object \(client.probeLocation)\(name): \(Self.text(error))",
                    fix: "guardian must delete files here (retention, compaction): \(grantFix(write: true)); then delete \(client.probeLocation)\(name) by hand"))
                return (out, false)
            }
        }
        guard let readBack else { return (out, false) }
        guard readBack == bytes else {
            out.append(.fail(group, "replica.write", "the probe object read back differs from what was written (\(readBack.count) bytes instead of \(bytes.count))",
                fix: "something between guardian and the store alters objects (a proxy, a misbehaving S3-compatible server); guardian's LTX checksums would refuse such files at restore"))
            return (out, false)
        }
        let elapsed = ContinuousClock.now - started
        // The probe must be gone, and probes of interrupted runs are swept.
        var note = ""
        if let left = try? await Deadline.run(timeout, { try await client.listProbes() }) {
            if left.contains(where: { $0.name == name }) {
                out.append(.fail(group, "replica.delete", "the probe object \(name) is still listed after it was deleted",
                    fix: "the store acknowledges deletes it does not perform (versioning with delete markers hides them from listings, so this is something else): check the server; delete \(client.probeLocation)\(name) by hand"))
                return (out, false)
            }
            let stale = left.filter { now().timeIntervalSince($0.modified) > 600 }
            var swept = 0
            for old in stale {
                let deletion = await janitor.delete { try await client.deleteProbe(name: old.name) }
                if (try? await Deadline.run(timeout, { try await deletion.value })) != nil { swept += 1 }
            }
            if swept > 0 { note = "; removed \(swept) probe object\(swept == 1 ? "" : "s") left by an interrupted run" }
        }
        out.append(.ok(group, "replica.write", "wrote, read back and deleted a probe object in \(client.probeLocation) (\(Units.formatDuration(elapsed)))\(note)"))
        return (out, true)
    }

    private func holdings(_ files: [LTXFileInfo]) -> [DoctorReport.Check] {
        var out: [DoctorReport.Check] = []
        let now = now()
        guard let newest = files.max(by: { $0.createdAt < $1.createdAt }), let maxTXID = files.map(\.maxTXID).max() else {
            out.append(.warn(group, "replica.holdings", "empty: no restore point yet",
                fix: "guardian writes the first files as soon as it replicates this database: start it (systemctl start guardian) and check `guardian status`"))
            return out
        }
        func age(_ d: Date) -> String { Units.formatDuration(.milliseconds(Int64(max(0, now.timeIntervalSince(d)) * 1000))) }
        var text = "holds TXIDs up to \(LTXNaming.hex(maxTXID)) in \(files.count) LTX files; newest restore point \(age(newest.createdAt)) old"
        let snapshots = files.filter { $0.level == LTXNaming.snapshotLevel }
        let interval = Double(database.replication.snapshotInterval.milliseconds) / 1000
        if let snapshot = snapshots.max(by: { $0.createdAt < $1.createdAt }) {
            text += "; newest snapshot \(age(snapshot.createdAt)) old"
            if now.timeIntervalSince(snapshot.createdAt) > 2 * interval + 3600 {
                out.append(.warn(group, "replica.holdings", text + " (snapshot-interval \(Units.formatDuration(database.replication.snapshotInterval)))",
                    fix: "snapshots are overdue: guardian was not running, or writing the snapshot fails; see journalctl -u guardian"))
                return out + lag(maxTXID: maxTXID, newest: newest.createdAt)
            }
        } else {
            text += "; no scheduled snapshot yet (the first full image is the L0 file starting at TXID 1)"
        }
        out.append(.ok(group, "replica.holdings", text))
        return out + lag(maxTXID: maxTXID, newest: newest.createdAt)
    }

    /// How far the replica is behind the live database: by TXID against the
    /// running daemon's position, or else by time against the database's
    /// last modification.
    private func lag(maxTXID: UInt64, newest: Date) -> [DoctorReport.Check] {
        let allowed = max(10, 3 * Double(replica.syncInterval.milliseconds) / 1000)
        if let daemon, let live = daemon.txid.flatMap(LTXNaming.parse(txid:)) {
            let status = daemon.replicas.first { $0.name == replica.name }
            if let status, status.state == "Failing" {
                return [.fail(group, "replica.lag", "the running daemon fails to replicate here: \(status.error ?? "no detail") (\(status.consecutiveFailures) failures in a row)",
                    fix: "the daemon runs with other credentials or permissions than this doctor run: check /etc/default/guardian and the access of the user guardian runs as; journalctl -u guardian")]
            }
            if maxTXID >= live {
                return [.ok(group, "replica.lag", "caught up with the live database (TXID \(LTXNaming.hex(live)), per the running daemon)")]
            }
            let behind = live - maxTXID
            let lagSeconds = Double(status?.lagMs ?? 0) / 1000
            let text = "\(behind) transaction\(behind == 1 ? "" : "s") behind the live database (TXID \(LTXNaming.hex(live))); lag \(Units.formatDuration(.milliseconds(status?.lagMs ?? 0)))"
            if lagSeconds <= allowed {
                return [.ok(group, "replica.lag", text + ", within the sync interval")]
            }
            return [.warn(group, "replica.lag", text, fix: "see `guardian status` for this replica's error; a slow or failing store delays every restore point")]
        }
        guard let lastWrite = facts.lastWrite else { return [] }
        let gap = lastWrite.timeIntervalSince(newest)
        if gap <= allowed {
            return [.ok(group, "replica.lag", "the newest restore point covers the database's last write (no daemon answered; compared by time)")]
        }
        return [.warn(group, "replica.lag", "the database was written \(Units.formatDuration(.milliseconds(Int64(gap * 1000)))) after the newest restore point: those changes are not on this replica",
            fix: "start guardian (systemctl start guardian) so it replicates them; `guardian status` then shows the lag")]
    }

    // MARK: - Messages

    private var accessDescription: String {
        switch replica.target {
        case .file: "directory readable"
        case .s3(let s3): "credentials accepted; bucket \(s3.bucket) listed\(s3.endpoint.map { _ in "" } ?? " (region \(s3.region))")"
        case .sftp(let s): "host key verified; logged in as \(s.user)"
        }
    }

    private var missingDirectory: DoctorReport.Check {
        switch replica.target {
        case .file(let path):
            .fail(group, "replica.directory", "directory \(path) does not exist",
                fix: "create it for the user guardian runs as: install -d -o guardian -g guardian -m 0750 \(path) (under systemd guardian cannot create it from inside its sandbox)")
        case .sftp(let s):
            .warn(group, "replica.directory", "directory \(s.path) does not exist on \(s.host) yet: guardian creates it on its first write (not probed)",
                fix: "nothing to do if \(s.user) may create it; to check writing now, create it and run doctor again: ssh -p \(s.port) \(s.user)@\(s.host) mkdir -p \(s.path)")
        case .s3:
            .fail(group, "replica.directory", "missing", fix: "-")
        }
    }

    private var configFix: String {
        switch replica.target {
        case .s3: "set access-key-id: and secret-access-key: in the configuration (as ${VARS} from /etc/default/guardian), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
        case .sftp: "set known-hosts: (ssh-keyscan -p PORT HOST > FILE) and key-path: (or GUARDIAN_SFTP_PASSWORD)"
        case .file: "fix the replica's path"
        }
    }

    private func grantFix(write: Bool) -> String {
        switch replica.target {
        case .s3(let s3):
            "grant the key s3:ListBucket on arn:aws:s3:::\(s3.bucket) and s3:GetObject, s3:PutObject, s3:DeleteObject on arn:aws:s3:::\(s3.bucket)/\(s3.path)/*"
        case .sftp(let s):
            "make \(s.path) and everything below it writable by \(s.user) on \(s.host)"
        case .file(let path):
            "make \(path) writable by the user guardian runs as: chown -R guardian:guardian \(path) (a read-only mount must be remounted read-write)"
        }
    }

    static func text(_ error: any Error) -> String {
        if let e = error as? ReplicaError { return e.description }
        return "\(error)"
    }

    /// Turns a failed step into a check whose message says which kind of
    /// failure it is and whose fix says what to do about that kind.
    func classify(_ error: any Error, check: String, writing: Bool) -> DoctorReport.Check {
        let text = Self.text(error)
        if let e = error as? DeadlineExceeded {
            return .fail(group, check, "unreachable: \(e) (the server accepted the connection but did not answer)",
                fix: "check that the server is healthy and that nothing between (proxy, firewall) holds requests; a longer --timeout tells a slow server from a dead one")
        }
        guard let e = error as? ReplicaError, let cause = e.cause else {
            return .fail(group, check, text, fix: writing ? grantFix(write: true) : "see the message; `guardian status` and journalctl -u guardian show what the daemon sees")
        }
        switch cause {
        case .unreachable:
            return .fail(group, check, "unreachable: \(text)", fix: "check the host name and port in the configuration, DNS, and that the server is running and reachable from here")
        case .timeout:
            return .fail(group, check, "unreachable (timed out): \(text)", fix: "a firewall or routing problem drops the traffic, or the server is overloaded; check the network path")
        case .tls:
            return .fail(group, check, "TLS certificate not verified: \(text)",
                fix: "the endpoint's certificate is not trusted here: install its CA (update-ca-certificates) or use the name the certificate is for in endpoint:; skip-verify: true is for test servers only")
        case .hostKey:
            guard case .sftp(let s) = replica.target else { break }
            let known = s.knownHosts ?? "KNOWN_HOSTS"
            let label = s.port == 22 ? s.host : "[\(s.host)]:\(s.port)"
            if text.contains("HOST KEY CHANGED") {
                return .fail(group, check, "SSH host key not verified (it changed): \(text)",
                    fix: "if the server really got a new key (reinstalled), check the new fingerprint with its administrator, then: ssh-keygen -R '\(label)' -f \(known) && ssh-keyscan -p \(s.port) \(s.host) >> \(known); otherwise someone may be intercepting the connection")
            }
            return .fail(group, check, "SSH host key not verified: \(text)",
                fix: "compare the fingerprint above with the server's (on the server: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it: ssh-keyscan -p \(s.port) \(s.host) >> \(known)")
        case .authentication:
            switch replica.target {
            case .sftp(let s):
                return .fail(group, check, "wrong credentials: \(text)",
                    fix: "the public key of \(s.keyPath ?? "key-path") must be in ~\(s.user)/.ssh/authorized_keys on \(s.host) (or set GUARDIAN_SFTP_PASSWORD); check user:")
            default:
                return .fail(group, check, "wrong credentials: \(text)",
                    fix: "check access-key-id and secret-access-key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in /etc/default/guardian), and region:")
            }
        case .accessDenied:
            if writing {
                return .fail(group, check, "read-only: listing works but writing is refused: \(text)", fix: grantFix(write: true))
            }
            return .fail(group, check, "access denied: \(text)", fix: grantFix(write: false))
        case .missingBucket:
            if case .s3(let s3) = replica.target {
                return .fail(group, check, "bucket \(s3.bucket) does not exist: \(text)",
                    fix: "create it (aws s3 mb s3://\(s3.bucket) --region \(s3.region)\(s3.endpoint.map { " --endpoint-url \($0)" } ?? "")) or fix bucket:, region: and endpoint:")
            }
        case .wrongRegion:
            return .fail(group, check, "wrong region or endpoint: \(text)", fix: "set region: to the bucket's region (aws s3api get-bucket-location --bucket BUCKET), or fix endpoint:")
        case .clockSkew:
            return .fail(group, check, "the clock is off: \(text)", fix: "synchronise the clock: timedatectl set-ntp true (or chrony/ntpd)")
        }
        return .fail(group, check, text, fix: "see the message")
    }

    /// A reachability check's result, shared with the alert checks.
    static func reachability(_ outcome: NetProbe.Outcome, host: String, port: Int, group: String, check: String, timeout: Duration) -> DoctorReport.Check {
        switch outcome {
        case .connected(let address, let ms):
            return .ok(group, check, "\(host):\(port) reachable (\(address), connected in \(ms) ms)")
        case .unresolved(let reason):
            return .fail(group, check, "unreachable: cannot resolve \(host): \(reason)",
                fix: "check the host name in the configuration and DNS on this host (getent hosts \(host))")
        case .refused(let address):
            return .fail(group, check, "unreachable: \(address) refused the connection (nothing listens on port \(port))",
                fix: "start the server, or fix the port in the configuration")
        case .timedOut(let address):
            return .fail(group, check, "unreachable: no answer from \(address) within \(Units.formatDuration(timeout))",
                fix: "a firewall or routing problem drops the packets: check the network path to \(host):\(port) (nc -vz \(host) \(port))")
        case .unreachable(let address, let reason):
            return .fail(group, check, "unreachable: \(address): \(reason)", fix: "check the network (routes, interfaces) between this host and \(host)")
        }
    }
}

/// Deletes of probe objects run detached from the checks (a deadline or a
/// cancellation must not leave a probe behind); the doctor waits for the
/// stragglers before it exits.
actor ProbeJanitor {
    private var pending: [Task<Void, any Error>] = []

    func delete(_ body: @escaping @Sendable () async throws -> Void) -> Task<Void, any Error> {
        let task = Task.detached { try await body() }
        pending.append(task)
        return task
    }

    /// Waits up to `timeout` for every delete; returns how many did not finish.
    func drain(timeout: Duration) async -> Int {
        let tasks = pending
        pending = []
        var unfinished = 0
        for task in tasks {
            do {
                try await Deadline.run(timeout) { _ = try? await task.value }
            } catch {
                unfinished += 1
            }
        }
        return unfinished
    }
}
