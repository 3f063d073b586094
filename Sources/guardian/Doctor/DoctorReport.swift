import Foundation
import Platform
import Remediate

/// What `guardian doctor` found: one entry per check, grouped by what it is
/// about (the configuration, the host, a database, one of its replicas, the
/// disks, the alert destinations), each ok / warn / fail with a fix for the
/// last two. Rendered as text for people and as JSON (`--json`) for machines;
/// the JSON keys are stable.
struct DoctorReport: Codable, Sendable {
    enum Status: String, Codable, Sendable, Comparable {
        case ok, warn, fail

        var rank: Int {
            switch self {
            case .ok: 0
            case .warn: 1
            case .fail: 2
            }
        }

        static func < (a: Status, b: Status) -> Bool { a.rank < b.rank }

        /// `[ ok ]`, `[warn]`, `[FAIL]`: the same width, easy to grep.
        var tag: String {
            switch self {
            case .ok: "[ ok ]"
            case .warn: "[warn]"
            case .fail: "[FAIL]"
            }
        }
    }

    struct Check: Codable, Sendable, Equatable {
        /// The heading it is shown under: `host`, `database /data/app.db`,
        /// `replica s3 (s3://bucket/app) of /data/app.db`, `disk`, `alerts`.
        var group: String
        /// A stable identifier of the check: `db.journal-mode`, `replica.credentials`, ...
        var check: String
        var status: Status
        var message: String
        /// What to do about it (warn and fail only).
        var fix: String?

        static func ok(_ group: String, _ check: String, _ message: String) -> Check {
            Check(group: group, check: check, status: .ok, message: message, fix: nil)
        }

        static func warn(_ group: String, _ check: String, _ message: String, fix: String) -> Check {
            Check(group: group, check: check, status: .warn, message: message, fix: fix)
        }

        static func fail(_ group: String, _ check: String, _ message: String, fix: String) -> Check {
            Check(group: group, check: check, status: .fail, message: message, fix: fix)
        }
    }

    struct Summary: Codable, Sendable, Equatable {
        var ok = 0
        var warn = 0
        var fail = 0
    }

    var version: String
    var host: String
    var config: String
    var checkedAt: String
    var checks: [Check]

    var summary: Summary {
        var s = Summary()
        for c in checks {
            switch c.status {
            case .ok: s.ok += 1
            case .warn: s.warn += 1
            case .fail: s.fail += 1
            }
        }
        return s
    }

    /// 0 when nothing failed, 1 otherwise (warnings do not fail).
    var exitCode: Int32 { checks.contains { $0.status == .fail } ? 1 : 0 }

    /// Every message and fix with `secrets` replaced by `******` and access
    /// key ids shortened, a last guard behind each check's own care.
    func redacted(_ redactor: Redactor) -> DoctorReport {
        var copy = self
        copy.checks = checks.map { c in
            var c = c
            c.group = redactor.apply(c.group)
            c.message = redactor.apply(c.message)
            c.fix = c.fix.map(redactor.apply)
            return c
        }
        return copy
    }

    // MARK: - Rendering

    func text(color: Bool) -> String {
        func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        var out = "guardian doctor \(version) on \(host), configuration \(config)\n"
        var group: String?
        for c in checks {
            if c.group != group {
                out += "\n\(paint(c.group, "1"))\n"
                group = c.group
            }
            let tag: String
            switch c.status {
            case .ok: tag = paint(c.status.tag, "32")
            case .warn: tag = paint(c.status.tag, "33")
            case .fail: tag = paint(c.status.tag, "31")
            }
            out += "\(tag) \(Self.indentContinuation(c.message))\n"
            if let fix = c.fix, c.status != .ok {
                out += "       fix: \(Self.indentContinuation(fix, by: 12))\n"
            }
        }
        let s = summary
        let total = "\(s.ok) ok, \(s.warn) warning\(s.warn == 1 ? "" : "s"), \(s.fail) failure\(s.fail == 1 ? "" : "s")"
        out += "\n"
        if s.fail > 0 {
            out += paint("summary: \(total): fix the [FAIL] lines above", "31") + "\n"
        } else if s.warn > 0 {
            out += paint("summary: \(total): guardian can work; see the [warn] lines", "33") + "\n"
        } else {
            out += paint("summary: \(total): all good", "32") + "\n"
        }
        return out
    }

    /// Multi-line messages keep the column of the first line.
    private static func indentContinuation(_ s: String, by n: Int = 7) -> String {
        s.replacingOccurrences(of: "\n", with: "\n" + String(repeating: " ", count: n))
    }

    func json() -> String {
        struct Document: Encodable {
            var version: String
            var host: String
            var config: String
            var checkedAt: String
            var ok: Bool
            var summary: Summary
            var checks: [Check]
        }
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let doc = Document(version: version, host: host, config: config, checkedAt: checkedAt, ok: exitCode == 0, summary: summary, checks: checks)
        let data = (try? e.encode(doc)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
