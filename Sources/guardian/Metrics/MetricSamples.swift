import Foundation

/// One scrape's worth of metric values, computed from a status snapshot
/// (`GuardianMetrics.samples`): per family its name, kind, help text and
/// samples. `MetricsPipeline` records them through swift-metrics; nothing
/// here formats text.
struct MetricSamples {
    enum Kind: String { case counter, gauge }

    struct Family {
        let name: String
        let kind: Kind
        let help: String
        fileprivate(set) var samples: [(labels: [(String, String)], value: Double)] = []

        /// Adds one sample; `nil` values are left out (no sample is better than a made-up one).
        mutating func add(_ labels: [(String, String)], _ value: Double?) {
            guard let value else { return }
            for (name, _) in labels { precondition(MetricSamples.isValidLabelName(name), "invalid label name \(name)") }
            samples.append((labels, value))
        }

        mutating func add(_ labels: [(String, String)], _ value: Int?) { add(labels, value.map { Double($0) }) }
        mutating func add(_ labels: [(String, String)], _ value: Int64?) { add(labels, value.map { Double($0) }) }
        mutating func add(_ labels: [(String, String)], _ value: Bool) { add(labels, value ? 1.0 : 0.0) }
    }

    private(set) var families: [Family] = []

    /// Declares a family and lets `fill` add its samples; each name once.
    mutating func family(_ name: String, _ kind: Kind, _ help: String, _ fill: (inout Family) -> Void) {
        precondition(Self.isValidMetricName(name), "invalid metric name \(name)")
        precondition(!families.contains { $0.name == name }, "metric family \(name) declared twice")
        var f = Family(name: name, kind: kind, help: help)
        fill(&f)
        families.append(f)
    }

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
}
