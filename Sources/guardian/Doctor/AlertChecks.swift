import Foundation
import Platform
import Remediate

/// The alert destinations: the URL's form and that its host resolves and
/// accepts TCP connections. Nothing is sent unless asked
/// (`--send-test-alert`: one trigger and its resolve per destination, at the
/// destination's `min-severity`). URLs and keys are secrets: destinations
/// are named `slack#0`, `pagerduty#1`... (or `name:`), and only the host and
/// port are shown.
enum AlertChecks {
    static let group = "alerts"

    static func run(_ alerts: [AlertConfig], sendTest: Bool, host: String, timeout: Duration) async -> [DoctorReport.Check] {
        if alerts.isEmpty {
            return [.warn(group, "alert.none", "no alert destinations: incidents, failing replicas and full disks are only logged",
                fix: "add alerts: (type slack, pagerduty or webhook) to the configuration")]
        }
        return await withTaskGroup(of: (Int, [DoctorReport.Check]).self) { group in
            for (index, alert) in alerts.enumerated() {
                group.addTask { (index, await check(alert, index: index, sendTest: sendTest, host: host, timeout: timeout)) }
            }
            var results: [(Int, [DoctorReport.Check])] = []
            for await r in group { results.append(r) }
            return results.sorted { $0.0 < $1.0 }.flatMap(\.1)
        }
    }

    static func label(_ alert: AlertConfig, index: Int) -> String {
        alert.name ?? "\(alert.kind.rawValue)#\(index)"
    }

    static func check(_ alert: AlertConfig, index: Int, sendTest: Bool, host: String, timeout: Duration) async -> [DoctorReport.Check] {
        let name = label(alert, index: index)
        guard let url = URLComponents(string: alert.url.value), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let target = url.host, !target.isEmpty
        else {
            return [.fail(group, "alert.url", "\(name): the URL is not an http(s) URL with a host",
                fix: "fix url: of this destination (the full webhook URL, e.g. https://hooks.slack.com/services/...)")]
        }
        if url.user != nil || url.password != nil {
            return [.fail(group, "alert.url", "\(name): the URL carries a user name or password",
                fix: "remove user:password@ from url: (webhooks authenticate by the URL's path or a key)")]
        }
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        var out: [DoctorReport.Check] = []
        if scheme == "http", !isLoopback(target) {
            out.append(.warn(group, "alert.url", "\(name): alerts go to \(target) over plain http (unencrypted; the URL is the secret)",
                fix: "use an https:// URL"))
        }
        let outcome: NetProbe.Outcome
        do {
            outcome = try await Deadline.run(timeout) {
                await BlockingPool.shared.run { NetProbe.connect(host: target, port: port, timeout: timeout) }
            }
        } catch {
            outcome = .timedOut(address: "\(target):\(port)")
        }
        var reach = ReplicaChecks.reachability(outcome, host: target, port: port, group: group, check: "alert.reach", timeout: timeout)
        reach.message = "\(name) (\(alert.kind.rawValue)): " + reach.message
        if reach.status == .ok, !sendTest { reach.message += "; no alert sent (--send-test-alert sends one)" }
        out.append(reach)
        guard reach.status == .ok, sendTest else { return out }
        out.append(await sendTestAlert(alert, name: name, host: host, timeout: timeout))
        return out
    }

    /// One trigger and its resolve, straight to this destination (not through
    /// the daemon's alerter: no state, no retries, and the HTTP status shown).
    static func sendTestAlert(_ alert: AlertConfig, name: String, host: String, timeout: Duration) async -> DoctorReport.Check {
        let transport = HTTPAlertTransport()
        let severity = AlertSeverity(rawValue: alert.minSeverity) ?? .warning
        let key = "guardian/\(host)/host/doctor-test"
        let now = Date()
        var statuses: [String] = []
        for action in [AlertNotice.Action.trigger, .resolve] {
            let notice = AlertNotice(
                action: action, key: key, severity: severity,
                summary: action == .trigger ? "guardian doctor test alert from \(host): no action needed" : "guardian doctor test alert resolved",
                database: nil, host: host, at: now, details: ["sent_by": "guardian doctor --send-test-alert"])
            let request = AlertPayloads.request(for: notice, to: alert, deliveryID: UUID().uuidString.lowercased())
            do {
                let status = try await Deadline.run(timeout) { try await transport.post(request, timeout: timeout) }
                statuses.append("\(action.rawValue) HTTP \(status)")
                guard (200..<300).contains(status) else {
                    return .fail(group, "alert.test", "\(name): the test alert was refused: \(statuses.joined(separator: ", "))",
                        fix: hint(status: status, kind: alert.kind))
                }
            } catch {
                return .fail(group, "alert.test", "\(name): the test alert could not be delivered (\(action.rawValue)): \(Redactor(alert: alert).apply("\(error)"))",
                    fix: "check that the destination accepts HTTPS from this host (proxy, firewall, TLS certificate)")
            }
        }
        return .ok(group, "alert.test", "\(name): test alert delivered (\(statuses.joined(separator: ", ")))")
    }

    private static func hint(status: Int, kind: AlertConfig.Kind) -> String {
        switch (kind, status) {
        case (.slack, 403), (.slack, 404), (.slack, 410):
            "the Slack webhook was revoked or mistyped: create a new incoming webhook and put its URL in url:"
        case (.pagerduty, 400):
            "PagerDuty refused the event: check routing-key: (the integration key of an Events API v2 integration)"
        case (_, 401), (_, 403):
            "the receiver refused the request: check the URL and, for type webhook, secret: (the HMAC key it verifies)"
        case (_, 404):
            "nothing answers at that path: check url:"
        case (_, 500...):
            "the receiver failed; try again later or check its logs"
        default:
            "check url: and the receiver's documentation for HTTP \(status)"
        }
    }

    private static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
    }
}
