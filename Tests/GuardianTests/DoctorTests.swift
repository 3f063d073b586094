import Foundation
@testable import Platform
import Remediate
import Replication
import Testing

@testable import guardian

/// A directory with a WAL database, replica directories and a configuration
/// file for `guardian doctor`, checked in-process (`Doctor`) and through the
/// built binary (exit codes, output).
private final class DoctorWorld: @unchecked Sendable {
    let dir: String
    var db: String { dir + "/app.db" }
    var configPath: String { dir + "/guardian.yml" }
    var replicasYAML = ""
    var dbExtraYAML = "    remediate: off\n"
    var alertsYAML = ""

    init(rows: Int = 20) async throws {
        dir = try TestSupport.makeTempDir("doctor")
        try await sqlite3(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        if rows > 0 {
            try await sqlite3(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows)) INSERT INTO t(v) SELECT 'row ' || i FROM n;")
        }
    }

    deinit { TestSupport.cleanup(dir) }

    var yaml: String {
        var text = """
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)

            """
        text += dbExtraYAML
        if !replicasYAML.isEmpty { text += "    replicas:\n" + replicasYAML }
        if !alertsYAML.isEmpty { text += "alerts:\n" + alertsYAML }
        return text
    }

    func fileReplica(_ name: String, _ path: String) {
        replicasYAML += "      - name: \(name)\n        url: file://\(path)\n"
    }

    func s3Replica(_ name: String, moto: MotoServer, bucket: String, path: String = "app", keyID: String? = nil, secret: String? = nil, endpoint: String? = nil) {
        replicasYAML += """
                  - name: \(name)
                    type: s3
                    bucket: \(bucket)
                    path: \(path)
                    endpoint: \(endpoint ?? moto.endpoint)
                    region: us-east-1
                    access-key-id: \(keyID ?? moto.accessKeyID)
                    secret-access-key: \(secret ?? moto.secretAccessKey)

            """
    }

    func sftpReplica(_ name: String, ssh: SSHServer, path: String, knownHosts: String? = nil) {
        replicasYAML += """
                  - name: \(name)
                    type: sftp
                    host: \(ssh.host):\(ssh.port)
                    user: \(ssh.user)
                    key-path: \(ssh.clientKey)
                    known-hosts: \(knownHosts ?? ssh.knownHosts)
                    path: \(path)

            """
    }

    /// Parses the configuration (and writes it for the binary).
    func config() throws -> GuardianConfig {
        try TestSupport.write(yaml, to: configPath)
        return try GuardianConfig.parse(text: yaml, file: configPath, environment: [:])
    }

    func doctor(timeout: Duration = .seconds(10), busAddress: String? = "unix:path=/nonexistent/bus") async throws -> DoctorReport {
        var options = Doctor.Options()
        options.timeout = timeout
        options.busAddress = busAddress
        options.host = "doctor-test"
        return await Doctor(config: try config(), options: options).run()
    }

    /// The built binary on the written configuration.
    func binary(_ extra: [String] = [], environment: [String: String] = [:]) async throws -> RunResult {
        _ = try config()
        var env = environment
        if env["DBUS_SYSTEM_BUS_ADDRESS"] == nil { env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=/nonexistent/bus" }
        return try await guardian(["doctor", "--config", configPath, "--environment-file", "/dev/null"] + extra, environment: env, timeout: .seconds(120))
    }
}

extension DoctorReport {
    func checks(group prefix: String) -> [Check] { checks.filter { $0.group.hasPrefix(prefix) } }
    func check(_ prefix: String, _ name: String) -> Check? { checks.first { $0.group.hasPrefix(prefix) && $0.check == name } }
    var failures: [Check] { checks.filter { $0.status == .fail } }
    var dump: String { text(color: false) }
}

/// Keys under `prefix` of a moto bucket, through boto3 (an independent client).
private func bucketKeys(_ moto: MotoServer, _ bucket: String) async throws -> [String] {
    Array(try await moto.listKeys(bucket: bucket, prefix: "").keys).sorted()
}

/// All paths below a directory (recursive), relative.
private func tree(_ path: String) -> [String] {
    (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []).sorted()
}

@Suite("guardian doctor", .serialized)
struct DoctorTests {
    // MARK: - Databases

    @Test func rollbackJournalDatabaseFailsWithThePragmaFix() async throws {
        let w = try await DoctorWorld()
        try await sqlite3(w.db, "PRAGMA journal_mode=DELETE;")
        w.fileReplica("local", w.dir + "/replica")
        try FileManager.default.createDirectory(atPath: w.dir + "/replica", withIntermediateDirectories: true)
        var report = try await w.doctor()
        let mode = try #require(report.check("database", "db.journal-mode"), "\(report.dump)")
        #expect(mode.status == .fail)
        #expect(mode.message.contains("rollback-journal mode"))
        #expect(mode.fix == "run `sqlite3 \(w.db) 'PRAGMA journal_mode=WAL'` (the setting is stored in the file; with the application stopped or idle)")
        #expect(report.exitCode == 1)

        // Following the fix clears it.
        try await sqlite3(w.db, "PRAGMA journal_mode=WAL;")
        report = try await w.doctor()
        #expect(report.check("database", "db.journal-mode")?.status == .ok, "\(report.dump)")
        #expect(report.failures.isEmpty, "\(report.dump)")
    }

    @Test func notADatabaseAndMissingDatabaseFail() async throws {
        let w = try await DoctorWorld()
        try TestSupport.write(String(repeating: "not sqlite at all\n", count: 20), to: w.db)
        var report = try await w.doctor()
        let header = try #require(report.check("database", "db.header"))
        #expect(header.status == .fail)
        #expect(header.message.contains("is not a valid SQLite database"), "\(header.message)")
        #expect(report.check("database", "db.journal-mode") == nil, "no mode check without a header")

        try FileManager.default.removeItem(atPath: w.db)
        report = try await w.doctor()
        let exists = try #require(report.check("database", "db.exists"))
        #expect(exists.status == .fail && exists.message.contains("does not exist"))
    }

    @Test(.enabled(if: getuid() == 0, "chown to another uid needs root"))
    func walOwnedByAnotherUserFailsWithTheChownFix() async throws {
        let w = try await DoctorWorld()
        // A live connection keeps -wal and -shm (SQLite removes them on the last close).
        let holder = try ChildProcess.start("/usr/bin/python3", ["-c", """
            import sqlite3, time
            c = sqlite3.connect('\(w.db)')
            c.execute("INSERT INTO t(v) VALUES ('held')"); c.commit()
            time.sleep(120)
            """])
        defer {
            holder.signal(SIGKILL)
            holder.removeFiles()
        }
        #expect(await TestSupport.waitUntil { FileManager.default.fileExists(atPath: w.db + "-shm") && FileManager.default.fileExists(atPath: w.db + "-wal") })
        var report = try await w.doctor()
        #expect(report.check("database", "db.owner")?.status == .ok, "\(report.dump)")

        #expect(chown(w.db + "-wal", 65534, 65534) == 0)
        report = try await w.doctor()
        let owner = try #require(report.check("database", "db.owner"))
        #expect(owner.status == .fail, "\(report.dump)")
        #expect(owner.message.contains("\(w.db)-wal is owned by nobody"), "\(owner.message)")
        #expect(owner.message.contains("SQLITE_CANTOPEN"))
        #expect(owner.fix?.contains("chown root:root \(w.db)-wal") == true, "\(owner.fix ?? "")")
        #expect(owner.fix?.contains("-shm") == false, "the -shm is still root's")

        let run = try await w.binary()
        #expect(run.status == 1, "\(run.stdout)")
        #expect(run.stdout.contains("[FAIL] \(w.db)-wal is owned by nobody"), "\(run.stdout)")
        #expect(run.stdout.contains("       fix: give them back to the database's owner: chown root:root \(w.db)-wal"), "\(run.stdout)")
    }

    /// guardian's rule for -wal and -shm is the database's uid, gid and
    /// mode (Platform.SidecarOwner); doctor checks the same
    /// three and names chmod and chown as needed.
    @Test func walWithAnotherModeOrGroupFailsWithTheFix() async throws {
        let w = try await DoctorWorld()
        #expect(chmod(w.db, 0o644) == 0)
        // A live connection keeps -wal and -shm; SQLite gives them the database's mode.
        let holder = try ChildProcess.start("/usr/bin/python3", ["-c", """
            import sqlite3, time
            c = sqlite3.connect('\(w.db)')
            c.execute("INSERT INTO t(v) VALUES ('held')"); c.commit()
            time.sleep(120)
            """])
        defer {
            holder.signal(SIGKILL)
            holder.removeFiles()
        }
        #expect(await TestSupport.waitUntil { FileManager.default.fileExists(atPath: w.db + "-shm") && FileManager.default.fileExists(atPath: w.db + "-wal") })
        var report = try await w.doctor()
        var owner = try #require(report.check("database", "db.owner"), "\(report.dump)")
        #expect(owner.status == .ok, "\(report.dump)")
        #expect(owner.message.hasSuffix(", mode 644"), "\(owner.message)")

        // The right user, a mode the database's group cannot write.
        #expect(chmod(w.db + "-wal", 0o600) == 0)
        report = try await w.doctor()
        owner = try #require(report.check("database", "db.owner"))
        #expect(owner.status == .fail, "\(report.dump)")
        #expect(owner.message.hasPrefix("\(w.db)-wal has mode 600, but the database by "), "\(owner.message)")
        #expect(owner.fix?.hasPrefix("give them the database's permissions: chmod 644 \(w.db)-wal (") == true, "\(owner.fix ?? "")")
        #expect(owner.fix?.contains("chown") == false && owner.fix?.contains("-shm") == false, "\(owner.fix ?? "")")
        // More open than the database: nobody is locked out, guardian would still change it.
        #expect(chmod(w.db + "-wal", 0o666) == 0)
        report = try await w.doctor()
        owner = try #require(report.check("database", "db.owner"))
        #expect(owner.status == .warn, "\(report.dump)")
        #expect(owner.message.hasPrefix("\(w.db)-wal has mode 666, more open than the database ("), "\(owner.message)")
        #expect(owner.fix?.hasPrefix("give them the database's permissions: chmod 644 \(w.db)-wal (") == true, "\(owner.fix ?? "")")
        #expect(chmod(w.db + "-wal", 0o644) == 0)
        report = try await w.doctor()
        #expect(report.check("database", "db.owner")?.status == .ok, "\(report.dump)")

        // The right user, another group (changing a group needs root).
        guard getuid() == 0 else { return }
        var st = stat()
        #expect(stat(w.db, &st) == 0)
        #expect(chown(w.db + "-shm", st.st_uid, 65534) == 0)
        #expect(chmod(w.db + "-shm", 0o600) == 0)
        report = try await w.doctor()
        owner = try #require(report.check("database", "db.owner"))
        #expect(owner.status == .fail, "\(report.dump)")
        let shmOwner = Identity.name(uid: st.st_uid, gid: 65534)
        #expect(owner.message.hasPrefix("\(w.db)-shm is owned by \(shmOwner) with mode 600, but the database by "), "\(owner.message)")
        let user = Identity.userName(st.st_uid) ?? "", group = Identity.groupName(st.st_gid) ?? ""
        #expect(owner.fix?.hasPrefix("give them back to the database's owner and permissions: chown \(user):\(group) \(w.db)-shm && chmod 644 \(w.db)-shm (") == true, "\(owner.fix ?? "")")
    }

    // MARK: - Replicas

    /// The healthy case: a file, an S3 (moto) and an SFTP replica written by
    /// `guardian replicate` all pass, the probe objects are gone from every
    /// store, and the binary exits 0. (moto in its default mode: in auth mode
    /// it refuses listings of prefixes with a slash — see
    /// s3FailuresAreToldApart, which checks credentials against it.)
    @Test func healthyFileS3AndSFTPReplicasPassAndLeaveNoProbe() async throws {
        let moto = try await MotoServer.start(buckets: ["doctor"])
        defer { moto.stop() }
        try await SharedPeers.withSSH { ssh in
            let w = try await DoctorWorld()
            let sftpPath = ssh.dataDir + "/doctor-\(UUID().uuidString.prefix(6))"
            let fileReplica = w.dir + "/replica"
            let s3URL = "s3://doctor/app?endpoint=\(moto.endpoint)&forcePathStyle=true&region=us-east-1"
            let sftpURL = "sftp://\(ssh.user)@\(ssh.host):\(ssh.port)\(sftpPath)?key-path=\(ssh.clientKey)&known-hosts=\(ssh.knownHosts)"
            let replicate = try ChildProcess.start(
                TestSupport.guardianBinary, ["replicate", "--state-dir", w.dir + "/state", w.db, "file://" + fileReplica, s3URL, sftpURL],
                environment: ["AWS_ACCESS_KEY_ID": moto.accessKeyID, "AWS_SECRET_ACCESS_KEY": moto.secretAccessKey, "GUARDIAN_LOG_TARGET": "stderr"])
            defer { replicate.removeFiles() }
            for i in 0..<3 {
                try await Task.sleep(for: .milliseconds(700))
                try await sqlite3(w.db, "INSERT INTO t(v) VALUES ('more \(i)');")
            }
            try await Task.sleep(for: .seconds(3))
            replicate.signal(SIGTERM)
            #expect(await replicate.wait(timeout: .seconds(40)) == 0, "\(replicate.stderr.suffix(2000))")

            // A probe left by an interrupted run an hour ago is swept.
            let stale = fileReplica + "/.guardian-doctor/" + ReplicaProbe.makeName()
            try FileManager.default.createDirectory(atPath: fileReplica + "/.guardian-doctor", withIntermediateDirectories: true)
            try TestSupport.write("stale\n", to: stale)
            var old = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
            #expect(utimensat(AT_FDCWD, stale, &old, 0) == 0)

            w.fileReplica("local", fileReplica)
            w.s3Replica("s3", moto: moto, bucket: "doctor")
            w.sftpReplica("sftp", ssh: ssh, path: sftpPath)
            let keysBefore = try await bucketKeys(moto, "doctor")
            let treeBefore = tree(sftpPath)

            let report = try await w.doctor()
            #expect(report.failures.isEmpty, "\(report.dump)")
            for name in ["local", "s3", "sftp"] {
                let group = "replica \(name) of"
                let checks = report.checks(group: group)
                #expect(!checks.isEmpty)
                #expect(checks.allSatisfy { $0.status == .ok }, "\(report.dump)")
                #expect(report.check(group, "replica.write")?.message.contains("wrote, read back and deleted a probe object") == true)
                #expect(report.check(group, "replica.holdings")?.message.contains("holds TXIDs up to 00000000000000") == true, "\(report.dump)")
                #expect(report.check(group, "replica.lag")?.status == .ok, "\(report.dump)")
            }
            #expect(report.check("replica s3", "replica.reach")?.message.contains("127.0.0.1:\(moto.port) reachable") == true)
            #expect(report.check("replica s3", "replica.credentials")?.message.hasPrefix("credentials accepted; bucket doctor listed") == true)
            #expect(report.check("replica sftp", "replica.credentials")?.message.contains("host key verified; logged in as \(ssh.user)") == true)
            #expect(report.check("replica local", "replica.write")?.message.contains("removed 1 probe object left by an interrupted run") == true, "\(report.dump)")

            // No probe anywhere afterwards, and nothing else changed.
            #expect(!FileManager.default.fileExists(atPath: fileReplica + "/.guardian-doctor"), "\(tree(fileReplica))")
            #expect(try await bucketKeys(moto, "doctor") == keysBefore)
            #expect(!keysBefore.contains { $0.contains(".guardian-doctor") })
            #expect(tree(sftpPath) == treeBefore)
            #expect(!treeBefore.contains { $0.contains(".guardian-doctor") })

            // guardian's own view of the replicas does not change (no LTX-looking probe).
            let ltx = try await guardian(["ltx", "--json", "file://" + fileReplica])
            #expect(ltx.status == 0 && !ltx.stdout.contains("probe-"), "\(ltx.stdout)")

            let run = try await w.binary()
            #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
            #expect(run.stdout.contains("[ ok ] wrote, read back and deleted a probe object in s3://doctor/app/.guardian-doctor/"), "\(run.stdout)")
            #expect(run.stdout.contains("summary: "), "\(run.stdout)")
            #expect(!run.stdout.contains(moto.secretAccessKey))
            #expect(try await bucketKeys(moto, "doctor") == keysBefore)
        }
    }

    /// Wrong credentials, a missing bucket, an endpoint that accepts
    /// connections and never answers, and a stopped server: each is a FAIL
    /// of its own kind, each within the timeout, and no secret is printed.
    @Test func s3FailuresAreToldApart() async throws {
        let moto = try await MotoServer.start(auth: true, buckets: ["doctor"])
        defer { moto.stop() }
        let w = try await DoctorWorld()
        let wrongSecret = "wrong-secret-\(UUID().uuidString.prefix(8))"
        w.s3Replica("good", moto: moto, bucket: "doctor")
        w.s3Replica("badkey", moto: moto, bucket: "doctor", secret: wrongSecret)
        w.s3Replica("unknownkey", moto: moto, bucket: "doctor", keyID: "AKIAUNKNOWNKEY000000", secret: wrongSecret)
        w.s3Replica("nobucket", moto: moto, bucket: "no-such-bucket-here")
        var report = try await w.doctor()

        // The right key passes the credential check and writes its probe
        // (moto enforces signatures here; its refusal of slashes in listing
        // prefixes in this mode fails the holdings listing, not checked).
        #expect(report.check("replica good", "replica.credentials")?.status == .ok, "\(report.dump)")
        #expect(report.check("replica good", "replica.write")?.status == .ok, "\(report.dump)")

        let bad = try #require(report.check("replica badkey", "replica.credentials"), "\(report.dump)")
        #expect(bad.status == .fail)
        #expect(bad.message.hasPrefix("wrong credentials:"), "\(bad.message)")
        #expect(bad.fix?.contains("secret-access-key") == true)
        #expect(report.check("replica badkey", "replica.reach")?.status == .ok, "reachable, but refused")
        #expect(report.check("replica badkey", "replica.write") == nil, "no probe after a failed login")
        let unknown = try #require(report.check("replica unknownkey", "replica.credentials"))
        #expect(unknown.status == .fail && unknown.message.hasPrefix("wrong credentials:"), "\(unknown.message)")

        let missing = try #require(report.check("replica nobucket", "replica.credentials"))
        #expect(missing.status == .fail)
        #expect(missing.message.hasPrefix("bucket no-such-bucket-here does not exist"), "\(missing.message)")
        #expect(missing.fix?.hasPrefix("create it (aws s3 mb s3://no-such-bucket-here --region us-east-1 --endpoint-url \(moto.endpoint))") == true, "\(missing.fix ?? "")")
        #expect(report.exitCode == 1)
        #expect(!report.dump.contains(wrongSecret) && !report.dump.contains(moto.secretAccessKey))
        #expect(!report.json().contains(wrongSecret) && !report.json().contains(moto.secretAccessKey))

        let run = try await w.binary()
        #expect(run.status == 1)
        #expect(run.stdout.contains("[FAIL] wrong credentials:"), "\(run.stdout)")
        for secret in [wrongSecret, moto.secretAccessKey] {
            #expect(!run.stdout.contains(secret) && !run.stderr.contains(secret))
        }

        // An endpoint that accepts the connection and never answers.
        let hung = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(hung) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let hungPort = TestSupport.freePort()
        addr.sin_port = in_port_t(UInt16(hungPort).bigEndian)
        #expect(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(hung, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0)
        #expect(listen(hung, 16) == 0)
        w.replicasYAML = ""
        w.s3Replica("hung", moto: moto, bucket: "doctor", endpoint: "http://127.0.0.1:\(hungPort)")
        var started = ContinuousClock.now
        report = try await w.doctor(timeout: .seconds(2))
        var elapsed = ContinuousClock.now - started
        #expect(report.check("replica hung", "replica.reach")?.status == .ok, "TCP accepts: \(report.dump)")
        let silent = try #require(report.check("replica hung", "replica.credentials"), "\(report.dump)")
        #expect(silent.status == .fail)
        #expect(silent.message.hasPrefix("unreachable"), "\(silent.message)")
        #expect(elapsed < .seconds(8), "doctor took \(elapsed) with a 2 s timeout")

        // The server stopped: the port is closed.
        w.replicasYAML = ""
        w.s3Replica("stopped", moto: moto, bucket: "doctor")
        moto.stop()
        started = ContinuousClock.now
        report = try await w.doctor(timeout: .seconds(3))
        elapsed = ContinuousClock.now - started
        let reach = try #require(report.check("replica stopped", "replica.reach"), "\(report.dump)")
        #expect(reach.status == .fail)
        #expect(reach.message == "unreachable: 127.0.0.1:\(moto.port) refused the connection (nothing listens on port \(moto.port))")
        #expect(reach.fix == "start the server, or fix the port in the configuration")
        #expect(report.checks(group: "replica stopped").count == 1, "nothing more is tried")
        #expect(elapsed < .seconds(3))
        let stoppedRun = try await w.binary(["--timeout", "3s"])
        #expect(stoppedRun.status == 1)
        #expect(stoppedRun.stdout.contains("[FAIL] unreachable: 127.0.0.1:\(moto.port) refused the connection"), "\(stoppedRun.stdout)")
    }

    /// An https endpoint whose certificate this host does not trust (a real
    /// TLS server with a self-signed certificate).
    @Test func untrustedCertificateIsATLSFailure() async throws {
        let w = try await DoctorWorld()
        let cert = w.dir + "/cert.pem", key = w.dir + "/key.pem"
        let gen = try await run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
        ])
        #expect(gen.status == 0, "\(gen.stderr)")
        try TestSupport.write("""
            import http.server, os, ssl, sys
            port_file, cert, key = sys.argv[1:4]
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
                def log_message(self, *a): pass
            s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
            open(port_file + ".tmp", "w").write(str(s.server_address[1])); os.rename(port_file + ".tmp", port_file)
            s.serve_forever()
            """ + "\n", to: w.dir + "/tls.py")
        let server = try ChildProcess.start("/usr/bin/python3", [w.dir + "/tls.py", w.dir + "/port", cert, key])
        defer {
            server.signal(SIGKILL)
            server.removeFiles()
        }
        #expect(await TestSupport.waitUntil { FileManager.default.fileExists(atPath: w.dir + "/port") }, "\(server.stderr)")
        let port = Int((try? String(contentsOfFile: w.dir + "/port", encoding: .utf8)) ?? "") ?? 0
        w.replicasYAML = """
                  - name: tls
                    type: s3
                    bucket: doctor
                    path: app
                    endpoint: https://127.0.0.1:\(port)
                    access-key-id: AKIATLSTEST000000000
                    secret-access-key: tls-test-secret

            """
        let report = try await w.doctor()
        #expect(report.check("replica tls", "replica.reach")?.status == .ok, "\(report.dump)")
        let tls = try #require(report.check("replica tls", "replica.credentials"), "\(report.dump)")
        #expect(tls.status == .fail)
        #expect(tls.message.hasPrefix("TLS certificate not verified: "), "\(tls.message)")
        #expect(tls.fix?.contains("update-ca-certificates") == true)
    }

    @Test func sftpUnknownOrChangedHostKeyFailsWithHowToAddIt() async throws {
        try await SharedPeers.withSSH { ssh in
            let w = try await DoctorWorld()
            let empty = w.dir + "/known_hosts_empty"
            try TestSupport.write("", to: empty)
            let other = w.dir + "/other_key"
            try await ssh.keygen(other)
            let wrong = w.dir + "/known_hosts_wrong"
            try ssh.writeKnownHosts(forHostKey: other, to: wrong)
            let path = ssh.dataDir + "/doctor-hk-\(UUID().uuidString.prefix(6))"
            w.sftpReplica("unknown", ssh: ssh, path: path, knownHosts: empty)
            w.sftpReplica("changed", ssh: ssh, path: path, knownHosts: wrong)
            w.sftpReplica("notyet", ssh: ssh, path: path)
            let fingerprint = try await ssh.fingerprint(of: ssh.hostKey)
            let report = try await w.doctor()

            let unknown = try #require(report.check("replica unknown", "replica.credentials"), "\(report.dump)")
            #expect(unknown.status == .fail)
            #expect(unknown.message.hasPrefix("SSH host key not verified: "), "\(unknown.message)")
            #expect(unknown.message.contains(fingerprint), "the fingerprint to compare: \(unknown.message)")
            #expect(unknown.fix?.contains("then add it: ssh-keyscan -p \(ssh.port) \(ssh.host) >> \(empty)") == true, "\(unknown.fix ?? "")")
            #expect(report.check("replica unknown", "replica.reach")?.status == .ok)

            let changed = try #require(report.check("replica changed", "replica.credentials"))
            #expect(changed.status == .fail)
            #expect(changed.message.hasPrefix("SSH host key not verified (it changed): "), "\(changed.message)")
            #expect(changed.fix?.contains("ssh-keygen -R '[\(ssh.host)]:\(ssh.port)' -f \(wrong)") == true, "\(changed.fix ?? "")")
            // The right key and a directory guardian has not created yet: a warning, nothing created.
            let notYet = try #require(report.check("replica notyet", "replica.directory"), "\(report.dump)")
            #expect(notYet.status == .warn)
            #expect(notYet.message == "directory \(path) does not exist on \(ssh.host) yet: guardian creates it on its first write (not probed)")
            #expect(report.check("replica notyet", "replica.write") == nil)
            #expect(!FileManager.default.fileExists(atPath: path), "nothing was written")

            let run = try await w.binary()
            #expect(run.status == 1)
            #expect(run.stdout.contains("[FAIL] SSH host key not verified: "), "\(run.stdout)")
            #expect(run.stdout.contains("fix: compare the fingerprint above"), "\(run.stdout)")
        }
    }

    /// With a daemon running, the lag is judged by TXID against the daemon's
    /// live position, and doctor's probe does not disturb it.
    @Test func runningDaemonGivesTheLivePosition() async throws {
        let w = try await DoctorWorld()
        let replica = w.dir + "/replica"
        try FileManager.default.createDirectory(atPath: replica, withIntermediateDirectories: true)
        w.fileReplica("local", replica)
        w.dbExtraYAML = "    remediate: off\n    monitor-interval: 100ms\n"
        _ = try w.config()
        let daemon = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", w.configPath, "--log-target", "stderr"])
        defer {
            daemon.signal(SIGKILL)
            daemon.removeFiles()
        }
        try await sqlite3(w.db, "INSERT INTO t(v) VALUES ('while running');")
        // Ready, and the replica caught up with the daemon's position.
        var before = ""
        let synced = try await TestSupport.waitUntil(timeout: .seconds(20)) {
            let r = try await guardian(["status", "--config", w.configPath, "--json"])
            guard r.status == 0, let doc = try? StatusDocument.decoder().decode(StatusDocument.self, from: Data(r.stdout.utf8)),
                  let db = doc.databases.first, let txid = db.txid else { return false }
            before = txid
            return doc.state == "ready" && db.replicas.first?.position == txid
        }
        #expect(synced, "daemon: \(daemon.stderr.suffix(2000))")

        let report = try await w.doctor()
        #expect(report.check("guardian", "daemon")?.message.hasPrefix("the daemon answers at \(w.dir)/guardian.sock: guardian \(GuardianVersion.string), pid \(daemon.pid), ready") == true, "\(report.dump)")
        let live = try #require(report.check("database", "db.daemon"), "\(report.dump)")
        #expect(live.status == .ok && live.message == "replicated by the running daemon (TXID \(before))", "\(live.message)")
        let lag = try #require(report.check("replica local", "replica.lag"), "\(report.dump)")
        #expect(lag.status == .ok)
        #expect(lag.message == "caught up with the live database (TXID \(before), per the running daemon)", "\(lag.message)")
        #expect(report.failures.isEmpty, "\(report.dump)")

        // The same file by a relative path or through a symlink is the daemon's
        // configuration; a copy elsewhere is not.
        let cwdDepth = FileManager.default.currentDirectoryPath.split(separator: "/").count
        let relative = String(repeating: "../", count: cwdDepth) + w.configPath.dropFirst()
        symlink(w.dir, w.dir + "-link")
        defer { unlink(w.dir + "-link") }
        let copy = w.dir + "/copy.yml"
        try FileManager.default.copyItem(atPath: w.configPath, toPath: copy)
        for (path, same) in [(relative, true), (w.dir + "-link/" + (w.configPath as NSString).lastPathComponent, true), (copy, false)] {
            let r = try await guardian(["doctor", "--config", path, "--environment-file", "/dev/null"], environment: ["DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"], timeout: .seconds(120))
            #expect(r.stdout.contains("the daemon runs with") != same, "\(path): \(r.stdout)")
        }

        // The daemon still replicates after the probe came and went.
        try await sqlite3(w.db, "INSERT INTO t(v) VALUES ('after doctor');")
        let still = try await TestSupport.waitUntil(timeout: .seconds(10)) {
            let r = try await guardian(["status", "--config", w.configPath, "--json"])
            guard let doc = try? StatusDocument.decoder().decode(StatusDocument.self, from: Data(r.stdout.utf8)), let db = doc.databases.first else { return false }
            return db.replicas.first?.state == "Syncing" && db.replicas.first?.position == db.txid && db.txid != before
        }
        #expect(still, "daemon: \(daemon.stderr.suffix(2000))")
        #expect(!FileManager.default.fileExists(atPath: replica + "/.guardian-doctor"))
    }

    @Test(.enabled(if: getuid() == 0, "mounting needs root"))
    func readOnlyReplicaIsToldFromAMissingOne() async throws {
        let w = try await DoctorWorld()
        let ro = w.dir + "/ro"
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
        let m = try await run("/bin/mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro])
        #expect(m.status == 0, "\(m.stderr)")
        defer { _ = Glibc.umount2(ro, Int32(MNT_DETACH)) }
        w.fileReplica("ro", ro)
        let report = try await w.doctor()
        #expect(report.check("replica ro", "replica.credentials")?.status == .ok, "listing works: \(report.dump)")
        let write = try #require(report.check("replica ro", "replica.write"), "\(report.dump)")
        #expect(write.status == .fail)
        #expect(write.message.hasPrefix("read-only: listing works but writing is refused: "), "\(write.message)")
        #expect(write.message.contains("Read-only file system"))
    }

    @Test func missingReplicaDirectoryFailsWithTheInstallFix() async throws {
        let w = try await DoctorWorld()
        w.fileReplica("gone", w.dir + "/not-created")
        let report = try await w.doctor()
        let check = try #require(report.check("replica gone", "replica.directory"))
        #expect(check.status == .fail)
        #expect(check.message == "directory \(w.dir)/not-created does not exist")
        #expect(check.fix?.hasPrefix("create it for the user guardian runs as: install -d -o guardian -g guardian -m 0750 \(w.dir)/not-created") == true)
        #expect(!FileManager.default.fileExists(atPath: w.dir + "/not-created"), "doctor creates nothing")
    }

    // MARK: - Application control

    @Test func stopStartCommandsAndUnitsWithoutASystemBus() async throws {
        let w = try await DoctorWorld()
        w.dbExtraYAML = "    stop-command: [/nonexistent/app-stop]\n    start-command: [/bin/true]\n"
        var report = try await w.doctor()
        var control = try #require(report.check("database", "db.app-control"), "\(report.dump)")
        #expect(control.status == .fail)
        #expect(control.message.hasPrefix("stop-command /nonexistent/app-stop does not exist"), "\(control.message)")

        let notExecutable = w.dir + "/app-stop"
        try TestSupport.write("#!/bin/sh\n", to: notExecutable)
        w.dbExtraYAML = "    stop-command: [\(notExecutable)]\n    start-command: [/bin/true]\n"
        report = try await w.doctor()
        #expect(report.check("database", "db.app-control")?.message.contains("is not executable") == true)

        chmod(notExecutable, 0o755)
        report = try await w.doctor()
        control = try #require(report.check("database", "db.app-control"))
        #expect(control.status == .ok, "\(control.message)")
        #expect(control.message == "stop-command \(notExecutable), start-command /bin/true: executable (not run)")

        // unit: with no system bus at all: a warning, not a crash, and exit 0.
        w.dbExtraYAML = "    unit: no-such-app.service\n"
        report = try await w.doctor(busAddress: "unix:path=\(w.dir)/no-bus")
        control = try #require(report.check("database", "db.app-control"))
        #expect(control.status == .warn)
        #expect(control.message.hasPrefix("cannot check unit no-such-app.service: no system D-Bus here"), "\(control.message)")
        let run = try await w.binary()
        #expect(run.status == 0, "\(run.stdout)")
        #expect(run.stdout.contains("[warn] cannot check unit no-such-app.service: no system D-Bus here"), "\(run.stdout)")

        // A bus on which no systemd answers (a bare dbus-daemon).
        let busDir = try TestSupport.makeTempDir("bus")
        defer { TestSupport.cleanup(busDir) }
        try TestSupport.write("""
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig><type>custom</type><listen>unix:path=\(busDir)/bus</listen><auth>EXTERNAL</auth>
            <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
            """, to: busDir + "/bus.conf")
        let bus = try ChildProcess.start("/usr/bin/dbus-daemon", ["--config-file=\(busDir)/bus.conf", "--nofork"])
        defer {
            bus.signal(SIGTERM)
            bus.removeFiles()
        }
        #expect(await TestSupport.waitUntil { FileManager.default.fileExists(atPath: busDir + "/bus") })
        report = try await w.doctor(busAddress: "unix:path=\(busDir)/bus")
        control = try #require(report.check("database", "db.app-control"))
        #expect(control.status == .warn)
        #expect(control.message.hasPrefix("cannot check unit no-such-app.service: systemd does not answer on the bus"), "\(control.message)")
    }

    /// With a real systemd (PID 1 of a container): a unit that does not
    /// exist fails, one that exists passes.
    @Test(.enabled(if: NspawnSystemd.available, "needs root and systemd-nspawn"))
    func unitThatDoesNotExistFailsUnderARealSystemd() async throws {
        let box = try await NspawnSystemd()
        do {
            try await box.install(unit: "gtest-doctor-app.service", "[Service]\nExecStart=/usr/bin/sleep infinity\n")
            let w = try await DoctorWorld()
            w.dbExtraYAML = "    unit: gtest-doctor-missing.service\n"
            var report = try await w.doctor(busAddress: box.busAddress)
            var control = try #require(report.check("database", "db.app-control"), "\(report.dump)")
            #expect(control.status == .fail)
            #expect(control.message == "unit gtest-doctor-missing.service does not exist (LoadState=not-found): guardian cannot stop and start the application")

            w.dbExtraYAML = "    unit: gtest-doctor-app.service\n"
            report = try await w.doctor(busAddress: box.busAddress)
            control = try #require(report.check("database", "db.app-control"))
            #expect(control.status == .warn, "exists but not started: \(control.message)")
            #expect(control.message == "unit gtest-doctor-app.service exists but is inactive: the application is not running")
        } catch {
            await box.shutdown()
            throw error
        }
        await box.shutdown()
    }

    // MARK: - Alerts and secrets

    @Test func alertsAreOnlyCheckedUnlessATestAlertIsAskedForAndSecretsNeverPrinted() async throws {
        let hmacKey = "hmac-key-\(UUID().uuidString.prefix(8))"
        let rx = try await WebhookReceiver(key: hmacKey)
        defer { rx.stop() }
        let slackPath = "/services/T0/B0/SLACKSECRET\(UUID().uuidString.prefix(6))"
        let routingKey = "ROUTINGKEY\(UUID().uuidString.prefix(6))"
        let dead = TestSupport.freePort()
        let w = try await DoctorWorld()
        w.alertsYAML = """
              - type: webhook
                url: \(rx.url("/hook/HOOKSECRET"))
                secret: \(hmacKey)
              - type: slack
                url: \(rx.url(slackPath))
              - type: pagerduty
                url: \(rx.url("/pd/v2/enqueue"))
                routing-key: \(routingKey)
              - type: slack
                name: dead-slack
                url: http://127.0.0.1:\(dead)/services/DEADSECRET

            """
        let secrets = [hmacKey, slackPath, routingKey, "HOOKSECRET", "DEADSECRET", rx.url(slackPath)]

        let quiet = try await w.binary()
        #expect(quiet.status == 1, "the dead destination fails: \(quiet.stdout)")
        #expect(quiet.stdout.contains("[ ok ] webhook#0 (webhook): 127.0.0.1:\(rx.port) reachable"), "\(quiet.stdout)")
        #expect(quiet.stdout.contains("no alert sent (--send-test-alert sends one)"))
        #expect(quiet.stdout.contains("[FAIL] dead-slack (slack): unreachable: 127.0.0.1:\(dead) refused the connection"), "\(quiet.stdout)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(rx.deliveries.isEmpty, "nothing is sent without --send-test-alert")

        let loud = try await w.binary(["--send-test-alert", "--json"])
        #expect(loud.status == 1)
        #expect(await rx.waitFor(6))
        let deliveries = rx.deliveries
        #expect(deliveries.count == 6, "one trigger and one resolve per live destination")
        let hook = deliveries.filter { $0.path == "/hook/HOOKSECRET" }
        #expect(hook.map { $0.headers["x-guardian-event"] ?? "" } == ["trigger", "resolve"])
        #expect(hook.allSatisfy { $0.sigOK == true }, "signed with the configured key")
        #expect(hook.first?.body["dedup_key"] as? String == "guardian/\(Alerter.hostName())/host/doctor-test")
        let pd = deliveries.filter { $0.path.hasPrefix("/pd") }
        #expect(pd.map { $0.body["event_action"] as? String ?? "" } == ["trigger", "resolve"])
        #expect(pd.first?.body["routing_key"] as? String == routingKey)

        let doc = try #require(try JSONSerialization.jsonObject(with: Data(loud.stdout.utf8)) as? [String: Any], "\(loud.stdout)")
        let checks = doc["checks"] as? [[String: Any]] ?? []
        let tests = checks.filter { $0["check"] as? String == "alert.test" }
        #expect(tests.count == 3)
        #expect(tests.allSatisfy { $0["status"] as? String == "ok" }, "\(tests)")
        #expect(tests.contains { ($0["message"] as? String) == "pagerduty#2: test alert delivered (trigger HTTP 202, resolve HTTP 202)" }, "\(tests)")
        #expect(doc["ok"] as? Bool == false)
        let summary = doc["summary"] as? [String: Int] ?? [:]
        #expect(summary["fail"] == 1, "\(summary)")

        for run in [quiet, loud] {
            for secret in secrets {
                #expect(!run.stdout.contains(secret), "\(secret) printed")
                #expect(!run.stderr.contains(secret), "\(secret) printed on stderr")
            }
        }
    }

    /// A configuration that does not load goes through the redactor too: a
    /// secret pasted on the wrong line is not printed, whether it comes from
    /// a variable (of the environment file) or is written in the file.
    @Test func invalidConfigurationNeverPrintsASecret() async throws {
        let dir = try TestSupport.makeTempDir("doctor-cfg")
        defer { TestSupport.cleanup(dir) }
        let secret = "S3cr3t\(UUID().uuidString.prefix(8))"
        try TestSupport.write("S3_SECRET=\(secret)\nDATA=/srv/data\n", to: dir + "/env")
        try TestSupport.write("""
            state-dir: ${S3_SECRET}
            dbs:
              - path: ${DATA}/a.db
                replicas:
                  - type: s3
                    bucket: b
                    secret-access-key: ${S3_SECRET}

            """, to: dir + "/g.yml")
        let run = try await guardian(["doctor", "--config", dir + "/g.yml", "--environment-file", dir + "/env"])
        #expect(run.status == 1)
        #expect(run.stdout.contains("[FAIL] \(dir)/g.yml:1: state-dir: \"******\" must be an absolute path"), "\(run.stdout)")
        #expect(!run.stdout.contains(secret) && !run.stderr.contains(secret))

        let literal = "L1teral\(UUID().uuidString.prefix(8))"
        try TestSupport.write("""
            dbs:
              - path: /a.db
                replicas:
                  - type: s3
                    bucket: b
                    path: app
                    region: us-east-1
                    secret-access-key: "\(literal)"   # quoted
                    sync-interval: \(literal)

            """, to: dir + "/g.yml")
        let second = try await guardian(["doctor", "--config", dir + "/g.yml", "--environment-file", "/dev/null"])
        #expect(second.status == 1)
        #expect(second.stdout.contains("sync-interval: \"******\" is not a duration"), "\(second.stdout)")
        #expect(!second.stdout.contains(literal), "\(second.stdout)")

        // What counts as a secret without a parsed configuration.
        let r = Doctor.redactor(unloadedText: """
            state-dir: ${STATE}
            alerts:
              - type: slack
                url: https://hooks.example.com/services/T0/B0/XYZW
              - type: webhook
                url: 'https://hooks.example.com/${HOOK_PATH}'
                secret: hmac-k3y # a comment
            replicas:
              - access-key-id: AKIAIOSFODNN7EXAMPLE
                password: pw-1234
            """, environment: ["STATE": "/var/lib/guardian", "HOOK_PATH": "hook/T0KEN", "AWS_SECRET_ACCESS_KEY": "from-the-env"])
        #expect(r.apply("/var/lib/guardian") == "/var/lib/guardian", "a variable of a plain key is no secret")
        #expect(r.apply("https://hooks.example.com/services/T0/B0/XYZW") == "******")
        #expect(r.apply("POST /services/T0/B0/XYZW: 404") == "POST ******: 404")
        #expect(r.apply("at hook/T0KEN") == "at ******")
        #expect(r.apply("hmac-k3y pw-1234 from-the-env") == "****** ****** ******")
        #expect(r.apply("AKIAIOSFODNN7EXAMPLE") == "AKIA…MPLE")
    }

    @Test func invalidConfigurationIsOneFailureWithFileLineAndKey() async throws {
        let dir = try TestSupport.makeTempDir("doctor-cfg")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.write("dbs:\n  - path: /a.db\n    remediate: maybe\n", to: dir + "/g.yml")
        let run = try await guardian(["doctor", "--config", dir + "/g.yml", "--environment-file", "/dev/null"])
        #expect(run.status == 1)
        #expect(run.stdout.contains("[FAIL] \(dir)/g.yml:3: dbs[0].remediate: \"maybe\" must be one of auto, alert-only, off"), "\(run.stdout)")
        #expect(run.stdout.contains("summary: 0 ok, 0 warnings, 1 failure"))

        let bad = try await guardian(["doctor", "--config", dir + "/g.yml", "--timeout", "soon"])
        #expect(bad.status == 64, "usage error")
        #expect(bad.stderr.contains("--timeout soon: give a positive duration"))
    }

    // MARK: - Pieces

    @Test func deadlineReturnsOnTimeEvenWhenTheWorkBlocks() async throws {
        let started = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await Deadline.run(.milliseconds(200)) {
                await BlockingPool.shared.run { usleep(2_000_000) }
            }
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        let value = try await Deadline.run(.seconds(5)) { 42 }
        #expect(value == 42)
    }

    /// A bus that accepts the connection and never answers (sd-bus waits
    /// 10 s per call for it): the guardian.service probe keeps to --timeout.
    @Test func aBusThatNeverAnswersKeepsToTheTimeout() async throws {
        let w = try await DoctorWorld()
        let path = w.dir + "/hung-bus"
        let bus = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(bus) }
        var addr = try UnixSocketServer.address(path)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(bus, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0 && listen(bus, 16) == 0)
        let started = ContinuousClock.now
        let report = try await w.doctor(timeout: .seconds(1), busAddress: "unix:path=\(path)")
        let took = ContinuousClock.now - started
        #expect(took < .seconds(5), "doctor waited \(took) for the bus")
        let unit = try #require(report.check("guardian", "systemd.guardian"), "\(report.dump)")
        #expect(unit.status == .warn)
        #expect(unit.message == "cannot check guardian.service: the system bus did not answer within 1.0s", "\(unit.message)")
    }

    /// One redactor: an alert destination's URL, its path alone and its key;
    /// values shorter than four characters are left alone.
    @Test func theRedactorOfAnAlertDestination() {
        let alert = AlertConfig(kind: .webhook, url: Secret("https://hooks.example.com/hook/T0K3N"), key: Secret("hmac-key-1"))
        let r = Redactor(alert: alert)
        #expect(r.apply("POST https://hooks.example.com/hook/T0K3N failed") == "POST ****** failed")
        #expect(r.apply("404 for /hook/T0K3N, key hmac-key-1") == "404 for ******, key ******")
        #expect(Redactor(secrets: ["abc"]).apply("abc abcd") == "abc abcd")
        var all = Redactor()
        all.add(alert)
        #expect(all.secrets == r.secrets)
        // Alert delivery errors mask the destination's own values however short,
        // and its path with and without a trailing slash.
        let short = AlertConfig(kind: .webhook, url: Secret("https://h.example/hk/"), key: Secret("k3y"))
        let delivery = Redactor(alert: short, shortest: 1)
        #expect(delivery.apply("HTTP 404 for /hk/ (/hk), key k3y") == "HTTP 404 for ****** (******), key ******")
        #expect(Redactor(alert: short).apply("key k3y") == "key k3y")
    }

    @Test func probeNamesAreNeverLTXNames() {
        for _ in 0..<100 {
            let name = ReplicaProbe.makeName()
            #expect(ReplicaProbe.isProbeName(name))
            #expect(ReplicaProbe.isProbeName(name + ".tmp"))
            #expect(LTXNaming.parse(fileName: name) == nil)
            #expect(LTXNaming.parse(fileName: name + ".tmp") == nil)
        }
        #expect(!ReplicaProbe.isProbeName("0000000000000001-0000000000000001.ltx"))
        #expect(!ReplicaProbe.isProbeName("probe-xyz.txt"))
    }

    @Test func reportTextAndExitCode() {
        var report = DoctorReport(version: "1", host: "h", config: "/c.yml", checkedAt: "t", checks: [
            .ok("g", "a", "fine"),
            .warn("g", "b", "meh", fix: "do x"),
        ])
        #expect(report.exitCode == 0)
        var text = report.text(color: false)
        #expect(text.contains("\ng\n[ ok ] fine\n[warn] meh\n       fix: do x\n"), "\(text)")
        #expect(text.hasSuffix("summary: 1 ok, 1 warning, 0 failures: guardian can work; see the [warn] lines\n"))
        report.checks.append(.fail("other", "c", "bad AKIAIOSFODNN7EXAMPLE s3cr3t", fix: "fix it"))
        report = report.redacted(Redactor(secrets: ["s3cr3t"], keyIDs: ["AKIAIOSFODNN7EXAMPLE"]))
        #expect(report.exitCode == 1)
        text = report.text(color: false)
        #expect(text.contains("\nother\n[FAIL] bad AKIA…MPLE ******\n       fix: fix it\n"), "\(text)")
    }
}
