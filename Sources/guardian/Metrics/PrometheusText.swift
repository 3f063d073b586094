import Foundation

/// A writer of the Prometheus text exposition format, version 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/): per metric
/// family one `# HELP` and one `# TYPE` line, then its samples
/// `name{label="value",...} value`, one per line, `\n` line endings.
///
/// guardian writes its metrics from one status snapshot per scrape (a pull
/// model), so there is no registry of live gauges here, only this writer;
/// see the README's "Metrics" section for why swift-prometheus was not used.
struct PrometheusText {
    enum Kind: String { case counter, gauge, untyped }

    struct Family {
        let name: String
        let kind: Kind
        let help: String
        fileprivate(set) var samples: [(labels: [(String, String)], value: Double)] = []

        /// Adds one sample; `nil` values are left out (no sample is better than a made-up one).
        mutating func add(_ labels: [(String, String)], _ value: Double?) {
            guard let value else { return }
            samples.append((labels, value))
        }

        mutating func add(_ labels: [(String, String)], _ value: Int?) { add(labels, value.map { Double($0) }) }
        mutating func add(_ labels: [(String, String)], _ value: Int64?) { add(labels, value.map { Double($0) }) }
        mutating func add(_ labels: [(String, String)], _ value: Bool) { add(labels, value ? 1.0 : 0.0) }
    }

    private(set) var families: [Family] = []

    /// Declares a family and lets `fill` add its samples. Families are
    /// written in declaration order, each name once.
    mutating func family(_ name: String, _ kind: Kind, _ help: String, _ fill: (inout Family) -> Void) {
        precondition(Self.isValidMetricName(name), "invalid metric name \(name)")
        precondition(!families.contains { $0.name == name }, "metric family \(name) declared twice")
        var f = Family(name: name, kind: kind, help: help)
        fill(&f)
        families.append(f)
    }

    func render() -> String {
        var out = ""
        for f in families {
            out += "# HELP \(f.name) \(Self.escapeHelp(f.help))\n"
            out += "# TYPE \(f.name) \(f.kind.rawValue)\n"
            for s in f.samples {
                out += f.name
                if !s.labels.isEmpty {
                    out += "{"
                    out += s.labels.map { name, value in
                        precondition(Self.isValidLabelName(name), "invalid label name \(name)")
                        return "\(name)=\"\(Self.escapeLabelValue(value))\""
                    }.joined(separator: ",")
                    out += "}"
                }
                out += " \(Self.format(s.value))\n"
            }
        }
        return out
    }

    /// The content type of this format.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    static func isValidMetricName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, isNameStart(first) || first == ":" else { return false }
        return s.unicodeScalars.allSatisfy { isNameStart($0) || $0 == ":" || ("0"..."9").contains($0) }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
    static func isValidLabelName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, isNameStart(first), !s.hasPrefix("__") else { return false }
        return s.unicodeScalars.allSatisfy { isNameStart($0) || ("0"..."9").contains($0) }
    }

    private static func isNameStart(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_"
    }

    /// Label values: backslash, double quote and line feed are escaped.
    static func escapeLabelValue(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// HELP text: backslash and line feed are escaped.
    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers without a fraction, others in Swift's shortest exact form;
    /// `+Inf`, `-Inf`, `NaN` as the format spells them.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
