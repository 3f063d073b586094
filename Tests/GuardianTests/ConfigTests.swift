import Foundation
import Testing
@testable import DiskWatch
@testable import guardian
import Platform
@testable import Replication

@Suite struct ConfigTests {
    let env = ["HOME": "/root", "AWS_SECRET_ACCESS_KEY": "s3cr3t-from-env", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY123"]

    func parse(_ text: String) throws -> GuardianConfig {
        try GuardianConfig.parse(text: text, file: "g.yml", environment: env)
    }

    func error(_ text: String) -> String? {
        do {
            _ = try parse(text)
            return nil
        } catch let e as ConfigError {
            return e.description
        } catch {
            return "unexpected: \(error)"
        }
    }

    @Test func eightCompactionLevelsAreTheMost() throws {
        let c = try parse("dbs:\n  - path: /a.db\n    compaction-levels: [1s, 2s, 3s, 4s, 5s, 6s, 7s, 8s]\n")
        #expect(c.dbs[0].replication.compactionLevels.count == 8)
    }

    /// guardian's secrets (variables the configuration references,
    /// credentials by name, systemd's notify socket) never reach a
    /// postrotate (or stop/start) command's environment. A real rotation
    /// whose postrotate writes its environment out.
    @Test func childCommandsNeverGetGuardiansSecrets() throws {
        let dir = try TestSupport.makeTempDir("child-env")
        defer { TestSupport.cleanup(dir) }
        setenv("GUARDIAN_TEST_HOOK_URL", "https://hooks.example/T000/hook-value-1", 1)
        setenv("GUARDIAN_TEST_DB_PASSWORD", "pw-value-2", 1)
        setenv("GUARDIAN_TEST_PLAIN", "plain-value-3", 1)
        defer { for n in ["GUARDIAN_TEST_HOOK_URL", "GUARDIAN_TEST_DB_PASSWORD", "GUARDIAN_TEST_PLAIN"] { unsetenv(n) } }
        _ = try GuardianConfig.parse(
            text: "alerts:\n  - type: slack\n    url: ${GUARDIAN_TEST_HOOK_URL}\n", file: "g.yml",
            environment: ProcessInfo.processInfo.environment)
        try TestSupport.write("line\n", to: dir + "/app.log")
        let rotator = DiskKit.rotator(
            [LogRotationConfig(paths: [dir + "/app.log"], rotate: 1, postRotate: ["/bin/sh", "-c", "env > \(dir)/env.txt"])], state: nil)
        rotator.runScheduled(force: true)
        let seen = try String(contentsOfFile: dir + "/env.txt", encoding: .utf8)
        #expect(!seen.contains("hook-value-1") && !seen.contains("pw-value-2"), "\(seen)")
        #expect(seen.contains("GUARDIAN_TEST_PLAIN=plain-value-3") && seen.contains("PATH="))
        #expect(ChildEnvironment.isHidden("AWS_SECRET_ACCESS_KEY") && ChildEnvironment.isHidden("NOTIFY_SOCKET"))
    }

    /// The systemd generator writes paths into a unit drop-in: a newline in
    /// one must not end the line and add a setting (ExecStartPre= as root...).
    @Test func systemdDropInsEscapeEveryPath() throws {
        var sandbox = SandboxPaths(try parse("state-dir: /var/lib/guardian\n"))
        sandbox.writable = [SandboxPaths.Entry(path: "/srv/a\nExecStartPre=/bin/evil", why: "database /srv/a\nExecStartPre=/bin/evil")]
        let text = sandbox.dropIn(source: "g.yml")
        let settings = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
        #expect(settings == ["[Service]", "ReadWritePaths=-/srv/a\\nExecStartPre=/bin/evil"], "\(text)")
        #expect(SandboxPaths.escape("-/srv/my dir/100%\t\u{1}\"q\\") == "\"-/srv/my dir/100%%\\t\\x01\\\"q\\\\\"")
        // The configuration refuses such paths in the first place, naming the line.
        #expect(error("state-dir: \"/var/lib/a\\nb\"\n")?.hasPrefix("g.yml:1: state-dir:") == true)
        #expect(error("disk:\n  logs:\n    - paths: [\"/var/log/a\\n.log\"]\n")?.hasPrefix("g.yml:3: disk.logs[0].paths:") == true)
    }

    /// The packaged configuration shows secrets as ${VAR} (never inline),
    /// loads without them, and postinst makes it root:guardian 0640; the
    /// unit leaves /proc/locks visible (the open-database check needs it).
    @Test func shippedPackagingKeepsSecretsOutOfTheConfiguration() throws {
        let root = TestSupport.packageRoot + "/packaging"
        let yml = try String(contentsOfFile: root + "/guardian.yml", encoding: .utf8)
        #expect(!yml.contains("hooks.slack.com/services/T"), "an inline webhook URL in the shipped configuration")
        #expect(yml.contains("url: ${SLACK_WEBHOOK_URL}"))
        _ = try GuardianConfig.parse(text: yml, file: "guardian.yml", environment: [:])
        let postinst = try String(contentsOfFile: root + "/debian/postinst", encoding: .utf8)
        #expect(postinst.contains("chown root:guardian \"$conf\"") && postinst.contains("chmod 0640 \"$conf\""))
        let unit = try String(contentsOfFile: root + "/guardian.service", encoding: .utf8)
        let settings = unit.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(settings.contains("ProtectProc=noaccess") && !settings.contains { $0.hasPrefix("ProcSubset=") })
    }

    @Test func litestreamStyleConfigParses() throws {
        let c = try parse("""
            dbs:
              - path: /data/app.db
                replicas:
                  - type: s3
                    bucket: my-backup-bucket
                    path: app-db
                    region: ap-southeast-1
                    retention: 72h
                    sync-interval: 1s
                  - type: sftp
                    host: backup-server:22
                    user: backup
                    key-path: /etc/litestream/backup-key
                    known-hosts: /etc/guardian/known_hosts
                    path: /backups/app.db
            """)
        #expect(c.dbs.count == 1)
        let r = c.dbs[0].replication.replicas
        #expect(r.count == 2)
        guard case .s3(let s3) = r[0].target else { Issue.record("not s3"); return }
        #expect(s3.bucket == "my-backup-bucket" && s3.path == "app-db" && s3.region == "ap-southeast-1")
        #expect(s3.secretAccessKey?.value == "s3cr3t-from-env")
        #expect(r[0].syncInterval == .seconds(1) && r[0].retention == .seconds(72 * 3600))
        guard case .sftp(let sftp) = r[1].target else { Issue.record("not sftp"); return }
        #expect(sftp.host == "backup-server" && sftp.port == 22 && sftp.user == "backup")
        #expect(r.map(\.name) == ["s3", "sftp1"])
    }

    @Test func environmentExpansion() throws {
        let c = try GuardianConfig.parse(
            text: "dbs:\n  - path: ${DATA:-/data}/app.db\n    replicas:\n      - url: file://${BACKUP}/app\n",
            file: "g.yml", environment: ["BACKUP": "/backups"])
        #expect(c.dbs[0].path == "/data/app.db")
        #expect(c.dbs[0].replication.replicas[0].target == .file(path: "/backups/app"))
    }

    @Test func durationsSizesPercentages() throws {
        let c = try parse("""
            dbs:
              - path: /d/a.db
                monitor-interval: 250ms
                checkpoint-size: 2MB
                max-wal-size: 16MiB
            disk:
              warn: 70%
              critical: 85%
              emergency: 93%
            """)
        #expect(c.dbs[0].replication.monitorInterval == .milliseconds(250))
        #expect(c.dbs[0].replication.checkpointSize == 2_000_000)
        #expect(c.dbs[0].replication.maxWALSize == 16 * 1024 * 1024)
        #expect(c.disk.warn == 70 && c.disk.critical == 85 && c.disk.emergency == 93)
    }

    /// Each bad configuration exits with exactly this `file:line: key: what is wrong`.
    @Test(arguments: [
        ("dbs:\n  - path: /a.db\n    sync-intervall: 1s\n", "g.yml:3: dbs[0].sync-intervall: unknown key"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n        sync-interval: fast\n",
         "g.yml:5: dbs[0].replicas[0].sync-interval: \"fast\" is not a duration (use 1s, 250ms, 72h)"),
        ("dbs:\n  - replicas: []\n", "g.yml:2: dbs[0].path: is required"),
        ("dbs:\n  - path: relative.db\n", "g.yml:2: dbs[0].path: \"relative.db\" must be an absolute path"),
        ("dbs: /a.db\n", "g.yml:1: dbs: must be a list, not a single value"),
        ("disk:\n  warn: lots\n", "g.yml:2: disk.warn: \"lots\" is not a percentage between 0% and 100%"),
        ("disk:\n  ballast:\n    path: /b\n    size: huge\n", "g.yml:4: disk.ballast.size: \"huge\" is not a size (use 100MB, 1GiB, 512K)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - url: ftp://x/y\n",
         "g.yml:4: dbs[0].replicas[0].url: unsupported replica URL scheme ftp:// (use file, s3 or sftp)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - type: sftp\n        host: h\n        user: u\n        path: /p\n        key-path: /k\n",
         "g.yml:4: dbs[0].replicas[0]: an sftp replica needs known-hosts: (host keys are always verified; create it with ssh-keyscan)"),
        ("status:\n  socket: /run/g.sock\n  metrics: 9090\n", "g.yml:3: status.metrics: \"9090\" must be HOST:PORT with a loopback host and a port 1-65535, e.g. 127.0.0.1:9464 or [::1]:9464"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n        bucket: b\n", "g.yml:5: dbs[0].replicas[0].bucket: does not apply to a file replica"),
        ("dbs:\n  - path: ${NOPE}/a.db\n", "g.yml:2: environment variable NOPE is not set (use ${NOPE:-default} for a default)"),
        ("dbs:\n  - path: /a.db\n  - path: /a.db\n", "g.yml:1: dbs[1].path: /a.db is listed twice"),
        ("log:\n  level: loud\n", "g.yml:2: log.level: \"loud\" must be one of trace, debug, info, notice, warning, error, critical"),
        ("dbs:\n  - path: /a.db\n   bad: indent\n", "g.yml:3: YAML syntax: did not find expected '-' indicator while parsing a block collection"),
        ("dbs:\n  - path: /a.db\n    remediate: maybe\n", "g.yml:3: dbs[0].remediate: \"maybe\" must be one of auto, alert-only, off"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      weekly: sunday 3am\n",
         "g.yml:6: dbs[0].drill.weekly: \"sunday 3am\" must be \"DAY HH:MM\" in local time, e.g. \"sun 03:00\" (days: sun mon tue wed thu fri sat)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      interval: 1d\n      weekly: sun 03:00\n",
         "g.yml:6: dbs[0].drill: interval: and weekly: exclude each other; give one schedule"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      replica: s3\n",
         "g.yml:6: dbs[0].drill.replica: no replica named \"s3\" in this database (its replicas: file)"),
        // Overflow: a duration or size past what guardian can count is refused, never a crash.
        ("dbs:\n  - path: /a.db\n    retention: 1000000d\n", "g.yml:3: dbs[0].retention: \"1000000d\" is too long (at most 36500d, 100 years)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n        retention: 99999999999h\n",
         "g.yml:5: dbs[0].replicas[0].retention: \"99999999999h\" is too long (at most 36500d, 100 years)"),
        ("dbs:\n  - path: /a.db\n    checkpoint-size: 99999999999TB\n", "g.yml:3: dbs[0].checkpoint-size: \"99999999999TB\" is too large (at most 9EB)"),
        // Level 9 holds the snapshots: a ninth compaction level would collide with it.
        ("dbs:\n  - path: /a.db\n    compaction-levels: [1s, 2s, 3s, 4s, 5s, 6s, 7s, 8s, 9s]\n",
         "g.yml:3: dbs[0].compaction-levels: 9 levels; at most 8 (L1-L8): level 9 holds the snapshots"),
    ])
    func badConfigs(text: String, expected: String) {
        #expect(error(text) == expected)
    }

    @Test func checkConfigMasksSecretsAndExitsTwoOnError() async throws {
        let dir = try TestSupport.makeTempDir("cfg")
        defer { TestSupport.cleanup(dir) }
        let good = dir + "/good.yml"
        try TestSupport.write("""
            dbs:
              - path: /data/app.db
                replicas:
                  - url: s3://bucket/app?endpoint=http://127.0.0.1:9000
                    access-key-id: AKIAIOSFODNN7EXAMPLE
                    secret-access-key: ${SECRET}
            alerts:
              - type: slack
                url: https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX
            """, to: good)
        let ok = try await guardian(["check-config", "--config", good], environment: ["SECRET": "wJalrXUtnFEMI-very-secret"])
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("secret-access-key: ******"))
        #expect(!ok.stdout.contains("wJalrXUtnFEMI-very-secret"))
        #expect(!ok.stdout.contains("XXXXSECRETXXXX"))
        #expect(!ok.stdout.contains("AKIAIOSFODNN7EXAMPLE"))

        let bad = dir + "/bad.yml"
        try TestSupport.write("dbs:\n  - path: /a.db\n    retention: forever\n", to: bad)
        let r = try await guardian(["check-config", "--config", bad])
        #expect(r.status == 2)
        #expect(r.stderr == "guardian: \(bad):3: dbs[0].retention: \"forever\" is not a duration (use 1s, 250ms, 72h)\n")

        // A duration too long to count: an error naming key and line, not a crash.
        try TestSupport.write("dbs:\n  - path: /a.db\n    retention: 1000000d\n", to: bad)
        let long = try await guardian(["check-config", "--config", bad])
        #expect(long.status == 2, "\(long.stderr)")
        #expect(long.stderr == "guardian: \(bad):3: dbs[0].retention: \"1000000d\" is too long (at most 36500d, 100 years)\n")

        let missing = try await guardian(["check-config", "--config", dir + "/nope.yml"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("nope.yml:0: cannot read the file"))
    }
}
