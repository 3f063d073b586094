import Foundation
import Platform

public enum AlertSeverity: String, Sendable, Codable, CaseIterable, Comparable {
    case info, warning, critical

    var rank: Int {
        switch self {
        case .info: 0
        case .warning: 1
        case .critical: 2
        }
    }

    public static func < (a: AlertSeverity, b: AlertSeverity) -> Bool { a.rank < b.rank }
}

/// One alert to deliver: a trigger or the resolve of an earlier trigger,
/// identified by a stable dedup key (`guardian/<host>/<db>/<kind>`).
public struct AlertNotice: Sendable, Equatable {
    public enum Action: String, Sendable, Codable { case trigger, resolve }

    public var action: Action
    public var key: String
    public var severity: AlertSeverity
    public var summary: String
    public var database: String?
    public var host: String
    public var incident: Int64?
    public var at: Date
    /// Extra facts, shown as fields (never secrets).
    public var details: [String: String]

    public init(
        action: Action, key: String, severity: AlertSeverity, summary: String, database: String?, host: String,
        incident: Int64? = nil, at: Date = Date(), details: [String: String] = [:]
    ) {
        self.action = action
        self.key = key
        self.severity = severity
        self.summary = summary
        self.database = database
        self.host = host
        self.incident = incident
        self.at = at
        self.details = details
    }
}

/// An HTTP POST ready to send.
public struct AlertRequest: Sendable, Equatable {
    public var url: String
    public var headers: [String: String]
    public var body: [UInt8]
}

/// The wire formats, as pure functions of the notice and the destination:
/// - Slack incoming webhook: `{"text": ..., "attachments": [{"color", "fields"}]}`.
/// - PagerDuty Events API v2: `{"routing_key", "event_action": "trigger"|"resolve",
///   "dedup_key", "payload": {"summary", "source", "severity", "timestamp",
///   "component", "group", "class", "custom_details"}}` (resolve carries no payload).
/// - Generic webhook: a JSON document (below) with
///   `X-Guardian-Signature: sha256=<hex HMAC-SHA256(key, body)>`,
///   `X-Guardian-Event: trigger|resolve` and `X-Guardian-Delivery: <uuid>`.
///
///       {"version": 1, "action": "trigger", "dedup_key": "...", "severity": "critical",
///        "summary": "...", "host": "...", "database": "/data/app.db", "incident": 12,
///        "at": "2026-11-25T10:00:00.123Z", "details": {...}}
public enum AlertPayloads {
    public static let signatureHeader = "X-Guardian-Signature"

    public static func request(for notice: AlertNotice, to destination: AlertConfig, deliveryID: String) -> AlertRequest {
        switch destination.kind {
        case .slack:
            return AlertRequest(url: destination.url.value, headers: ["Content-Type": "application/json"], body: slack(notice))
        case .pagerduty:
            return AlertRequest(
                url: destination.url.value, headers: ["Content-Type": "application/json"],
                body: pagerDuty(notice, routingKey: destination.key?.value ?? ""))
        case .webhook:
            let body = generic(notice)
            var headers = [
                "Content-Type": "application/json", "X-Guardian-Event": notice.action.rawValue, "X-Guardian-Delivery": deliveryID,
            ]
            if let key = destination.key {
                headers[signatureHeader] = signature(body: body, key: key)
            }
            return AlertRequest(url: destination.url.value, headers: headers, body: body)
        }
    }

    /// `sha256=<lower-case hex HMAC-SHA256(key, body)>`
    public static func signature(body: [UInt8], key: Secret) -> String {
        "sha256=" + Crypto.hex(Crypto.hmacSHA256(key: Array(key.value.utf8), data: body))
    }

    static func json(_ object: Any) -> [UInt8] {
        (try? Array(JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))) ?? Array("{}".utf8)
    }

    static func title(_ n: AlertNotice) -> String {
        switch n.action {
        case .trigger: "[\(n.severity.rawValue.uppercased())] \(n.summary)"
        case .resolve: "[RESOLVED] \(n.summary)"
        }
    }

    public static func slack(_ n: AlertNotice) -> [UInt8] {
        let color: String
        switch (n.action, n.severity) {
        case (.resolve, _): color = "#2eb67d"
        case (_, .critical): color = "#e01e5a"
        case (_, .warning): color = "#ecb22e"
        case (_, .info): color = "#36c5f0"
        }
        var fields: [[String: Any]] = [["title": "Host", "value": n.host, "short": true]]
        if let db = n.database { fields.append(["title": "Database", "value": db, "short": true]) }
        if let id = n.incident { fields.append(["title": "Incident", "value": "\(id) (guardian incidents show \(id))", "short": true]) }
        for (k, v) in n.details.sorted(by: { $0.key < $1.key }) { fields.append(["title": k, "value": v, "short": v.count < 40]) }
        return json([
            "text": "guardian: \(title(n))",
            "attachments": [["color": color, "fields": fields, "footer": "guardian · \(n.key)", "ts": Int(n.at.timeIntervalSince1970)]],
        ])
    }

    public static func pagerDuty(_ n: AlertNotice, routingKey: String) -> [UInt8] {
        var doc: [String: Any] = ["routing_key": routingKey, "event_action": n.action.rawValue, "dedup_key": n.key]
        if n.action == .trigger {
            var custom: [String: Any] = n.details
            if let id = n.incident { custom["incident"] = id }
            if let db = n.database { custom["database"] = db }
            var payload: [String: Any] = [
                "summary": String(title(n).prefix(1024)), "source": n.host, "severity": n.severity == .critical ? "critical" : n.severity.rawValue,
                "timestamp": Timestamps.iso8601(n.at), "group": "guardian", "class": kind(of: n.key), "custom_details": custom,
            ]
            if let db = n.database { payload["component"] = db }
            doc["payload"] = payload
            doc["client"] = "guardian"
        }
        return json(doc)
    }

    public static func generic(_ n: AlertNotice) -> [UInt8] {
        var doc: [String: Any] = [
            "version": 1, "action": n.action.rawValue, "dedup_key": n.key, "severity": n.severity.rawValue, "summary": n.summary,
            "host": n.host, "at": Timestamps.iso8601(n.at), "details": n.details,
        ]
        if let db = n.database { doc["database"] = db }
        if let id = n.incident { doc["incident"] = id }
        return json(doc)
    }

    /// The last component of a dedup key (`incident-12`, `wal-size`).
    static func kind(of key: String) -> String { key.split(separator: "/").last.map(String.init) ?? key }
}
