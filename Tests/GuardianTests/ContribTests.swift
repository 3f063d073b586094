import Foundation
import Testing
@testable import guardian

/// The fleet alerting rules and the Grafana dashboard in contrib/: checked by
/// the real promtool (Debian's prometheus package), with unit tests of the
/// alerts, and every metric they use is one guardian serves.
@Suite struct ContribTests {
    static let promtool = "/usr/bin/promtool"
    static let rules = TestSupport.packageRoot + "/contrib/prometheus/guardian-alerts.yml"
    static let rulesTest = TestSupport.packageRoot + "/contrib/prometheus/guardian-alerts.test.yml"
    static let dashboard = TestSupport.packageRoot + "/contrib/grafana/guardian-dashboard.json"

    /// Every family guardian can serve (declared even without samples).
    static var families: Set<String> {
        let doc = StatusDocument(version: "1", pid: 1, startedAt: "2026-11-25T00:00:00.000Z", uptimeSeconds: 1, config: "/c", state: "ready", databases: [])
        return Set(GuardianMetrics.samples(doc).families.map(\.name))
    }

    static func metricNames(in text: String) -> Set<String> {
        let regex = /guardian_[a-z0-9_]+/
        return Set(text.matches(of: regex).map { String($0.output) })
    }

    @Test func promtoolChecksAndUnitTestsTheAlertingRules() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.promtool), "scripts/install-deps.sh installs prometheus (promtool)")
        let check = try await run(Self.promtool, ["check", "rules", Self.rules])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("SUCCESS: 12 rules found"), "\(check.stdout)")
        let test = try await run(Self.promtool, ["test", "rules", Self.rulesTest])
        #expect(test.status == 0, "\(test.stdout)\(test.stderr)")
    }

    @Test func rulesAndDashboardUseOnlyMetricsGuardianServes() throws {
        let families = Self.families
        #expect(families.count > 40)
        let rules = try String(contentsOfFile: Self.rules, encoding: .utf8)
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.dashboard))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(json["panels"] as? [[String: Any]])
        let exprs = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(exprs.count >= panels.count)
        for (what, text) in [("rules", rules), ("dashboard", exprs.joined(separator: "\n"))] {
            let used = Self.metricNames(in: text)
            #expect(!used.isEmpty)
            #expect(used.subtracting(families).isEmpty, "\(what) uses metrics guardian does not serve: \(used.subtracting(families).sorted())")
        }
    }
}
