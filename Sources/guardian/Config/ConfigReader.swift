import Foundation
import Platform
import Yams

/// A configuration error that names the file, line and key:
/// `/etc/guardian/guardian.yml:12: dbs[0].replicas[0].sync-interval: "fast" is not a duration (use 1s, 250ms, 72h)`.
struct ConfigError: Error, CustomStringConvertible, Equatable {
    let file: String
    let line: Int
    let key: String
    let message: String

    var description: String {
        key.isEmpty ? "\(file):\(line): \(message)" : "\(file):\(line): \(key): \(message)"
    }
}

/// One YAML node plus where it came from. Section parsers read mappings with
/// `MappingReader`, which remembers the keys read so that `finish()` can reject
/// unknown keys.
struct ConfigNode {
    let node: Node
    let file: String
    /// Dotted key path, `dbs[0].replicas[1].url`.
    let path: String

    var line: Int { (node.mark?.line ?? 0) }

    func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: line, key: path, message: message)
    }

    func mapping() throws -> MappingReader {
        guard case .mapping(let m) = node else { throw error("must be a mapping (key: value), not \(kind)") }
        return MappingReader(mapping: m, owner: self)
    }

    func sequence() throws -> [ConfigNode] {
        guard case .sequence(let s) = node else { throw error("must be a list, not \(kind)") }
        return s.enumerated().map { ConfigNode(node: $0.element, file: file, path: "\(path)[\($0.offset)]") }
    }

    var kind: String {
        switch node {
        case .scalar: "a single value"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    func scalar() throws -> String {
        guard case .scalar(let s) = node else { throw error("must be a single value, not \(kind)") }
        return s.string
    }

    var isNull: Bool {
        if case .scalar(let s) = node { return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string) }
        return false
    }

    func string() throws -> String {
        let s = try scalar()
        guard !s.isEmpty else { throw error("must not be empty") }
        return s
    }

    func duration() throws -> Duration {
        let s = try scalar()
        guard Units.durationSeconds(s) != nil else { throw error("\"\(s)\" is not a duration (use 1s, 250ms, 72h)") }
        guard let d = Units.duration(s), d >= .zero else { throw error("\"\(s)\" is too long (at most 36500d, 100 years)") }
        return d
    }

    func bytes() throws -> Int64 {
        let s = try scalar()
        guard Units.byteCount(s) != nil else { throw error("\"\(s)\" is not a size (use 100MB, 1GiB, 512K)") }
        guard let b = Units.bytes(s) else { throw error("\"\(s)\" is too large (at most 9EB)") }
        return b
    }

    func percent() throws -> Double {
        let s = try scalar()
        guard let p = Units.percent(s) else { throw error("\"\(s)\" is not a percentage between 0% and 100%") }
        return p
    }

    func bool() throws -> Bool {
        let s = try scalar()
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("\"\(s)\" is not true or false")
        }
    }

    func int(in range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
        let s = try scalar()
        guard let v = Int(s) else { throw error("\"\(s)\" is not a whole number") }
        guard range.contains(v) else { throw error("\(v) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func absolutePath() throws -> String {
        let s = try string()
        guard s.hasPrefix("/") else { throw error("\"\(s)\" must be an absolute path") }
        try noControlCharacters(s)
        return s
    }

    /// Paths go into unit files, logs and commands: a newline or other
    /// control character in one is refused.
    func noControlCharacters(_ s: String) throws {
        if s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw error("\(s.debugDescription) must not contain a newline or other control character")
        }
    }

    func oneOf<T: RawRepresentable>(_ type: T.Type) throws -> T where T.RawValue == String, T: CaseIterable {
        let s = try scalar()
        guard let v = T(rawValue: s) else {
            throw error("\"\(s)\" must be one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }

    func stringList() throws -> [String] {
        if case .scalar = node { return [try string()] }
        return try sequence().map { try $0.string() }
    }
}

/// Reads a YAML mapping key by key. Every accessor marks its key as known;
/// `finish()` then reports the first key nobody asked for.
final class MappingReader {
    private let entries: [(key: String, node: ConfigNode, keyLine: Int)]
    private var known: Set<String> = []
    let owner: ConfigNode

    init(mapping: Node.Mapping, owner: ConfigNode) {
        self.owner = owner
        var entries: [(String, ConfigNode, Int)] = []
        for (k, v) in mapping {
            let name = k.string ?? "?"
            let childPath = owner.path.isEmpty ? name : "\(owner.path).\(name)"
            entries.append((name, ConfigNode(node: v, file: owner.file, path: childPath), k.mark?.line ?? owner.line))
        }
        self.entries = entries
    }

    func has(_ key: String) -> Bool {
        known.insert(key)
        return entries.contains { $0.key == key }
    }

    /// The node under `key`, nil when absent or null.
    func optional(_ key: String) -> ConfigNode? {
        known.insert(key)
        guard let e = entries.first(where: { $0.key == key }), !e.node.isNull else { return nil }
        return e.node
    }

    func required(_ key: String) throws -> ConfigNode {
        guard let n = optional(key) else {
            let path = owner.path.isEmpty ? key : "\(owner.path).\(key)"
            throw ConfigError(file: owner.file, line: owner.line, key: path, message: "is required")
        }
        return n
    }

    func optional<T>(_ key: String, _ read: (ConfigNode) throws -> T) throws -> T? {
        try optional(key).map(read)
    }

    /// Call once every key has been read: unknown keys are errors, reported
    /// at their own line.
    func finish() throws {
        for e in entries where !known.contains(e.key) {
            let path = owner.path.isEmpty ? e.key : "\(owner.path).\(e.key)"
            throw ConfigError(file: owner.file, line: e.keyLine, key: path, message: "unknown key")
        }
    }
}

enum ConfigText {
    /// Expands `${VAR}` and `${VAR:-default}` from the environment. An unset
    /// variable without a default is an error naming the line, so that a
    /// missing secret is never silently empty. `$${` escapes a literal `${`.
    static func expand(_ text: String, file: String, environment: [String: String]) throws -> String {
        var out = ""
        var line = 1
        var i = text.startIndex
        var atLineStart = true
        while i < text.endIndex {
            let c = text[i]
            if c == "\n" { line += 1 }
            // A comment line is copied as it is: `# url: ${SLACK_WEBHOOK}` must not need the variable.
            if atLineStart, let end = text[i...].firstIndex(of: "\n") ?? Optional(text.endIndex),
               text[i..<end].trimmingCharacters(in: .whitespaces).hasPrefix("#") {
                out += text[i..<end]
                i = end
                atLineStart = false
                continue
            }
            atLineStart = c == "\n"
            if c == "$", text[i...].hasPrefix("$${") {
                out += "${"
                i = text.index(i, offsetBy: 3)
                continue
            }
            if c == "$", text[i...].hasPrefix("${"), let close = text[i...].firstIndex(of: "}") {
                let inner = String(text[text.index(i, offsetBy: 2)..<close])
                var name = inner
                var fallback: String?
                if let r = inner.range(of: ":-") {
                    name = String(inner[..<r.lowerBound])
                    fallback = String(inner[r.upperBound...])
                }
                guard name.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) != nil else {
                    throw ConfigError(file: file, line: line, key: "", message: "\"${\(inner)}\" is not a valid variable reference")
                }
                // Whatever the configuration takes from the environment may be
                // a secret: guardian's children never get it.
                ChildEnvironment.hide([name])
                if let v = environment[name], !(v.isEmpty && fallback != nil) {
                    out += v
                } else if let fallback {
                    out += fallback
                } else {
                    throw ConfigError(file: file, line: line, key: "", message: "environment variable \(name) is not set (use ${\(name):-default} for a default)")
                }
                i = text.index(after: close)
                continue
            }
            out.append(c)
            i = text.index(after: i)
        }
        return out
    }

    /// Parses YAML text into a root node (an empty file is an empty mapping).
    static func parse(_ text: String, file: String) throws -> ConfigNode {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                return ConfigNode(node: .mapping(Node.Mapping([])), file: file, path: "")
            }
            return ConfigNode(node: node, file: file, path: "")
        } catch let e as YamlError {
            throw yamlError(e, file: file)
        }
    }

    static func yamlError(_ e: YamlError, file: String) -> ConfigError {
        switch e {
        case .scanner(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, key: "", message: "YAML syntax: \(problem)\(context.map { " \($0.text)" } ?? "")")
        case .parser(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, key: "", message: "YAML syntax: \(problem)\(context.map { " \($0.text)" } ?? "")")
        case .composer(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, key: "", message: "YAML: \(problem)\(context.map { " \($0.text)" } ?? "")")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(file: file, line: context.mark.line, key: duplicates.joined(separator: ", "), message: "duplicate key")
        default:
            return ConfigError(file: file, line: 0, key: "", message: "YAML: \(e)")
        }
    }
}
