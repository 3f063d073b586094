import Foundation
import Testing
@testable import DiskWatch
@testable import guardian

@Suite struct DiskConfigTests {
    static func parse(_ yaml: String) throws -> GuardianConfig {
        try GuardianConfig.parse(text: yaml, file: "/etc/guardian/guardian.yml", environment: [:])
    }

    static func error(_ yaml: String) -> String {
        do {
            _ = try parse(yaml)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    /// A directory of many databases (a `dir:` entry's tenants) is sampled
    /// once, as the directory; a few databases keep their own paths.
    @Test func aDirectoryOfTenantsIsSampledOnce() {
        let few = (0..<3).map { "/srv/app/db\($0).sqlite" }
        let many = (0..<1000).map { "/srv/tenants/t\($0).db" }
        #expect(DiskWatchService.sampled(few + many) == few + ["/srv/tenants"])
        #expect(DiskWatchService.sampled(Array(many.prefix(8))) == Array(many.prefix(8)))
    }

    @Test func fullDiskSection() throws {
        let c = try Self.parse("""
            disk:
              interval: 500ms
              warn: 70%
              critical: 85%
              emergency: 93%
              hysteresis: 3
              paths: [/srv]
              rotate-interval: 30s
              forecast-window: 2m
              forecast-warning: 30m
              pressure-min-size: 10MB
              emergency-delete-archives: false
              ballast:
                path: /data/guardian.ballast
                size: 512MiB
              logs:
                - paths: [/var/log/app/*.log]
                  rotate: 5
                  size: 100M
                  maxage: 14d
                  compress: true
                  delaycompress: true
                  missingok: true
                  notifempty: true
                  create: 0640 www-data adm
                  postrotate: [systemctl, kill, -s, HUP, app.service]
                  postrotate-timeout: 10s
                - paths: /var/log/worker.log
                  frequency: daily
                  copytruncate: true
                  dateext: true
                  allowhardlink: true
                  su: root root
                - paths: [/var/log/quiet.log]
                  create: false
              cleanup:
                - path: /var/tmp/app-cache
                  pattern: "*.tmp"
                  max-age: 2d
                  recursive: true
            """)
        let d = c.disk
        #expect(d.interval == .milliseconds(500))
        #expect(d.warn == 70 && d.critical == 85 && d.emergency == 93 && d.hysteresis == 3)
        #expect(d.rotateInterval == .seconds(30))
        #expect(d.forecastWindow == .seconds(120))
        #expect(d.forecastWarning == .seconds(1800))
        #expect(d.pressureMinSize == 10_000_000)
        #expect(d.emergencyDeleteArchives == false)
        #expect(d.ballast == BallastConfig(path: "/data/guardian.ballast", size: 512 << 20))
        #expect(d.logs.count == 3)
        let app = d.logs[0]
        #expect(app.rotate == 5 && app.size == 100 << 20 && app.maxAge == .seconds(14 * 86400))
        #expect(app.compress && app.delayCompress && app.missingOK && app.notIfEmpty && app.create)
        #expect(app.createMode == 0o640 && app.createOwner == "www-data" && app.createGroup == "adm")
        #expect(app.postRotate == ["systemctl", "kill", "-s", "HUP", "app.service"])
        #expect(app.postRotateTimeout == .seconds(10))
        #expect(d.logs[1].paths == ["/var/log/worker.log"] && d.logs[1].frequency == .daily && d.logs[1].copyTruncate && d.logs[1].dateExt)
        #expect(d.logs[1].allowHardLink && !d.logs[0].allowHardLink)
        #expect(d.logs[1].suRoot && !d.logs[0].suRoot)
        #expect(d.logs[2].create == false)
        #expect(d.cleanup == [CleanupRule(path: "/var/tmp/app-cache", pattern: "*.tmp", maxAge: .seconds(2 * 86400), recursive: true)])
    }

    @Test func defaults() throws {
        let d = try Self.parse("disk:\n  logs:\n    - paths: [/var/log/a.log]\n").disk
        #expect(d == DiskConfig(logs: [LogRotationConfig(paths: ["/var/log/a.log"])]))
        #expect(d.interval == .seconds(1) && d.warn == 80 && d.critical == 90 && d.emergency == 95)
        #expect(d.logs[0].rotate == 7 && d.logs[0].create && !d.logs[0].compress)
    }

    /// Cleanup paths that reach what guardian keeps (quarantine, its
    /// state, drill scratch, file replicas) are refused, naming the line.
    @Test func cleanupThatReachesWhatGuardianKeepsIsRefused() {
        let head = "state-dir: /var/lib/guardian\ndbs:\n  - path: /srv/app/app.db\n    replicas:\n      - url: file:///backup/app\n"
        func cleanup(_ path: String, recursive: Bool) -> String {
            Self.error(head + "disk:\n  cleanup:\n    - path: /tmp/ok\n      max-age: 1d\n    - path: \(path)\n      max-age: 1d\n      recursive: \(recursive)\n")
        }
        // The default quarantine is /srv/app/guardian-quarantine.
        #expect(cleanup("/srv/app", recursive: true).hasPrefix("/etc/guardian/guardian.yml:10: disk.cleanup[1].path: /srv/app reaches /srv/app/guardian-quarantine"))
        #expect(cleanup("/srv/app/guardian-quarantine", recursive: false).hasPrefix("/etc/guardian/guardian.yml:10: disk.cleanup[1].path:"))
        #expect(cleanup("/var/lib/guardian/staging", recursive: false).contains("reaches /var/lib/guardian,"))
        #expect(cleanup("/var/lib", recursive: true).contains("reaches /var/lib/guardian,"))
        #expect(cleanup("/backup", recursive: true).contains("reaches /backup/app,"))
        // Files directly in the database's directory only: the quarantine is not reached.
        #expect(cleanup("/srv/app", recursive: false) == "no error")
        #expect(Self.error(head + "disk:\n  cleanup:\n    - path: /srv/app/cache\n      max-age: 1d\n      recursive: true\n") == "no error")
    }

    @Test func badInputNamesFileLineAndKey() {
        #expect(Self.error("disk:\n  ballast:\n    path: /data/b\n    size: 0\n")
            == "/etc/guardian/guardian.yml:4: disk.ballast.size: must be more than 0 bytes")
        #expect(Self.error("disk:\n  cleanup:\n    - path: /\n      max-age: 1d\n")
            == "/etc/guardian/guardian.yml:3: disk.cleanup[0].path: refusing to clean up below /; name the directory that holds disposable files")
        #expect(Self.error("disk:\n  logs:\n    - paths: [/var/log/../lib/app.db]\n")
            .hasPrefix("/etc/guardian/guardian.yml:3: disk.logs[0].paths: \"/var/log/../lib/app.db\" must not contain .. components"))
        #expect(Self.error("disk:\n  logs:\n    - paths: [var/log/a.log]\n")
            == "/etc/guardian/guardian.yml:3: disk.logs[0].paths: \"var/log/a.log\" must be an absolute path or glob")
        #expect(Self.error("disk:\n  logs:\n    - paths: [/a.log]\n      create: rw-r-----\n")
            .hasPrefix("/etc/guardian/guardian.yml:4: disk.logs[0].create: must be \"MODE [OWNER [GROUP]]\""))
        #expect(Self.error("disk:\n  logs:\n    - paths: [/a.log]\n      copytruncate: true\n      create: \"0640\"\n")
            == "/etc/guardian/guardian.yml:3: disk.logs[0]: copytruncate and create exclude each other")
        #expect(Self.error("disk:\n  logs:\n    - paths: [/a.log]\n      minsize: 10M\n      maxsize: 1M\n")
            .hasPrefix("/etc/guardian/guardian.yml:3: disk.logs[0]: minsize"))
        #expect(Self.error("disk:\n  logs:\n    - paths: [/a.log]\n      su: www-data adm extra\n")
            == "/etc/guardian/guardian.yml:4: disk.logs[0].su: must be \"USER GROUP\" (e.g. \"www-data adm\")")
        #expect(Self.error("disk:\n  interval: 0\n") == "/etc/guardian/guardian.yml:2: disk.interval: must be more than 0")
        #expect(Self.error("disk:\n  logs:\n    - paths: [/a.log]\n      frequency: yearly\n")
            == "/etc/guardian/guardian.yml:4: disk.logs[0].frequency: \"yearly\" must be one of hourly, daily, weekly, monthly")
        #expect(Self.error("disk:\n  logs:\n    - paths: [/a.log]\n      rotat: 3\n")
            == "/etc/guardian/guardian.yml:4: disk.logs[0].rotat: unknown key")
    }

    @Test func emergencyTruncateAndForecastHorizon() throws {
        let c = try Self.parse("""
            disk:
              forecast-horizon: 5m
              logs:
                - paths: [/var/log/a.log]
                  emergency-truncate: keep 2MB
                - paths: [/var/log/b.log]
                  emergency-truncate: off
                - paths: [/var/log/c.log]
            """)
        #expect(c.disk.forecastHorizon == .seconds(300))
        #expect(c.disk.logs.map(\.emergencyTruncate) == [.keep(2_000_000), .off, .automatic])
        #expect(c.disk.logs[2].emergencyTruncate.keep(onDatabaseFilesystem: true) == 1 << 20)
        #expect(c.disk.logs[2].emergencyTruncate.keep(onDatabaseFilesystem: false) == nil)
        #expect(try Self.parse("disk: {}").disk.forecastHorizon == .seconds(600))
        let bad = Self.error("""
            disk:
              logs:
                - paths: [/var/log/a.log]
                  emergency-truncate: keep lots
            """)
        #expect(bad.contains("guardian.yml:4") && bad.contains("emergency-truncate") && bad.contains("keep SIZE"), "\(bad)")
    }
}
