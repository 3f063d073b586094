import Foundation
import Platform
import Testing

@testable import Remediate
@testable import guardian

/// `guardian incidents` through the built binary, and the remediation and
/// alert keys of the configuration file.
@Suite struct IncidentCommandTests {
    func seeded() async throws -> (dir: String, id: Int64) {
        let dir = try TestSupport.makeTempDir("incidents")
        let store = StateStore(stateDir: dir + "/state")
        var r = RemediationPostMortemTests.sampleRecord()
        let steps = r.steps
        let id = try await store.createIncident(r)
        r.id = id
        try await store.updateIncident(r)
        for s in steps { try await store.appendStep(incident: id, s) }
        await store.close()
        return (dir, id)
    }

    @Test func listsIncidentsAsATableAndAsJSON() async throws {
        let (dir, id) = try await seeded()
        defer { TestSupport.cleanup(dir) }
        let table = try await guardian(["incidents", "--state-dir", dir + "/state"])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("ID  DATABASE") == true)
        #expect(lines.count == 2)
        #expect(lines[1].contains("/data/app.db"))
        #expect(lines[1].contains("resolved-automatically"))
        #expect(lines[1].contains("disk-full"))
        #expect(lines[1].contains("2.3s"))

        let json = try await guardian(["incidents", "--json", "--state-dir", dir + "/state"])
        #expect(json.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 1)
        #expect(rows[0]["id"] as? Int == Int(id))
        #expect(rows[0]["downtime_ms"] as? Int == 2300)
        #expect(rows[0]["transactions_lost"] as? Int == 2)
    }

    @Test func showPrintsThePostMortem() async throws {
        let (dir, id) = try await seeded()
        defer { TestSupport.cleanup(dir) }
        let r = try await guardian(["incidents", "show", "\(id)", "--state-dir", dir + "/state"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("# Post-mortem: Database Corruption Incident\n"))
        for part in ["### Timeline", "- 08:00:00.250 — Detected", "### Root Cause", "**Disk full.**", "### Impact", "### Action Items"] {
            #expect(r.stdout.contains(part), "missing \(part)")
        }
        let json = try await guardian(["incidents", "show", "\(id)", "--json", "--state-dir", dir + "/state"])
        let record = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect((record["steps"] as? [[String: Any]])?.count == 4)
        #expect(record["detected_at"] as? String == "2027-01-15T08:00:00.250Z")

        let missing = try await guardian(["incidents", "show", "999", "--state-dir", dir + "/state"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no incident 999"))
    }

    @Test func findsTheStateDirectoryThroughTheConfiguration() async throws {
        let (dir, id) = try await seeded()
        defer { TestSupport.cleanup(dir) }
        try TestSupport.write("state-dir: \(dir)/state\ndbs: []\n", to: dir + "/guardian.yml")
        let r = try await guardian(["incidents", "show", "\(id)", "--config", dir + "/guardian.yml"])
        #expect(r.status == 0, "\(r.stderr)")
        let none = try await guardian(["incidents", "--state-dir", dir + "/elsewhere"])
        #expect(none.status == 0)
        #expect(none.stdout.contains("no incidents recorded"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/elsewhere"), "listing creates nothing")
        try TestSupport.write("state-dir: relative\n", to: dir + "/bad.yml")
        let bad = try await guardian(["incidents", "--config", dir + "/bad.yml"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("state-dir"))
    }

    // MARK: - Configuration keys

    func parse(_ yaml: String) throws -> GuardianConfig {
        try GuardianConfig.parse(text: yaml, file: "/etc/guardian/guardian.yml", environment: ["HOOK_SECRET": "from-env"])
    }

    func error(_ yaml: String) -> String {
        do {
            _ = try parse(yaml)
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func remediationKeysAreParsed() throws {
        let c = try parse("""
            dbs:
              - path: /data/app.db
                remediate: auto
                stop-command: [/bin/sh, /opt/app/stop.sh]
                start-command: [/bin/sh, /opt/app/start.sh]
                status-command: [/bin/sh, /opt/app/status.sh]
                stop-timeout: 20s
                start-timeout: 40s
                integrity-interval: 10m
                integrity-budget: 2s
                confirm-budget: 5m
                health-interval: 5s
                wal-warn-size: 32MB
                wal-critical-size: 128MB
                checkpoint-starvation: 2m
                lag-alert: off
                restore-attempts: 4
                cooldown: 1h
                verify: ["SELECT count(*) FROM users"]
                quarantine-dir: /var/lib/guardian/quarantine
            alerts:
              - type: webhook
                url: https://hooks.example.com/guardian
                secret: ${HOOK_SECRET}
                name: ops-hook
              - type: pagerduty
                url: https://events.pagerduty.com/v2/enqueue
                routing-key: R0UTING
                min-severity: critical
            """)
        let r = try #require(c.dbs.first).remediation
        #expect(r.appControl == .commands(stop: ["/bin/sh", "/opt/app/stop.sh"], start: ["/bin/sh", "/opt/app/start.sh"], status: ["/bin/sh", "/opt/app/status.sh"]))
        #expect(r.stopTimeout == .seconds(20) && r.startTimeout == .seconds(40))
        #expect(r.integrityInterval == .seconds(600) && r.integrityBudget == .seconds(2) && r.confirmBudget == .seconds(300))
        #expect(r.checkpointInterval == .seconds(5))
        #expect(r.walWarnSize == 32_000_000 && r.walCriticalSize == 128_000_000)
        #expect(r.checkpointStarvation == .seconds(120))
        #expect(r.lagAlert == nil)
        #expect(r.maxRestoreAttempts == 4)
        #expect(r.cooldown == .seconds(3600))
        #expect(r.verifyQueries == ["SELECT count(*) FROM users"])
        #expect(r.quarantineDir == "/var/lib/guardian/quarantine")
        #expect(r.effectiveMode == .auto)
        #expect(c.alerts.map(\.kind) == [.webhook, .pagerduty])
        #expect(c.alerts[0].key?.value == "from-env")
        #expect(c.alerts[0].name == "ops-hook")
        #expect(c.alerts[1].key?.value == "R0UTING")
        #expect(c.alerts[1].minSeverity == "critical")
        // A litestream.yml-style entry (no unit, no commands) parses and only alerts.
        let plain = try parse("dbs:\n  - path: /data/app.db\n    replicas:\n      - url: file:///backup/app\n")
        #expect(plain.dbs[0].remediation.effectiveMode == .alertOnly)
    }

    @Test func badRemediationAndAlertKeysAreNamed() {
        #expect(error("dbs:\n  - path: /d.db\n    stop-command: /usr/bin/systemctl stop app.service\n    start-command: [/bin/true]\n")
            .contains("dbs[0].stop-command: must be a list (argv)"))
        #expect(error("dbs:\n  - path: /d.db\n    stop-command: [systemctl, stop]\n    start-command: [/bin/true]\n")
            .contains("must be an absolute path"))
        #expect(error("dbs:\n  - path: /d.db\n    stop-command: [/bin/true]\n").contains("stop-command: and start-command: go together"))
        #expect(error("dbs:\n  - path: /d.db\n    unit: app.service\n    stop-command: [/bin/true]\n    start-command: [/bin/true]\n")
            .contains("exclude each other"))
        #expect(error("dbs:\n  - path: /d.db\n    unit: app\n").contains("not a systemd unit name"))
        #expect(error("dbs:\n  - path: /d.db\n    restore-attempts: 0\n").contains("dbs[0].restore-attempts: 0 is out of range"))
        #expect(error("dbs:\n  - path: /d.db\n    integrity-budget: 0s\n").contains("integrity-budget: must be more than 0"))
        #expect(error("dbs:\n  - path: /d.db\n    remediate: maybe\n").contains("must be one of auto, alert-only, off"))
        #expect(error("alerts:\n  - type: pagerduty\n    url: https://events.pagerduty.com/v2/enqueue\n").contains("needs routing-key"))
        #expect(error("alerts:\n  - type: webhook\n    url: https://x.example/h\n    routing-key: k\n").contains("takes secret:"))
        #expect(error("alerts:\n  - type: slack\n    url: https://hooks.slack.com/services/T/B/X\n    secret: s\n").contains("does not apply to a slack alert"))
        #expect(error("alerts:\n  - type: slack\n    url: https://hooks.slack.com/x\n    min-severity: loud\n").contains("must be one of info, warning, critical"))
        let leaky = error("alerts:\n  - type: slack\n    url: ftp://hooks.slack.com/services/T0/B0/SECRETPATH\n")
        #expect(leaky.contains("must be an http:// or https:// URL"))
        #expect(!leaky.contains("SECRETPATH"))
    }
}
