import DiskWatch
import Foundation
import Platform

/// Reads an existing logrotate 3.21 configuration (`disk.logs:` entry
/// `logrotate: /etc/logrotate.d/app`) into guardian's rotation rules, so a
/// log moves from logrotate to guardian without rewriting its configuration.
///
/// The syntax is logrotate's own (config.c of 3.21): directives at the top
/// of a file are defaults for the stanzas after them (and, like logrotate,
/// for the files read after it from the same directory or include); a
/// stanza is `path "quoted path" glob* { ... }`; `#` starts a comment line;
/// scripts run from `postrotate` to a line starting with `endscript`;
/// `include` reads a file or a directory (its files in byte order, skipping
/// logrotate's taboo extensions). The built-in defaults are logrotate's
/// (rotate 0, no create, ifempty, 1 MiB size criterion), exactly what
/// `logrotate FILE` would use; `defaults:` names a file (e.g.
/// /etc/logrotate.conf) whose top-level directives come first.
///
/// Every directive guardian implements is mapped; any other one is refused
/// with `file:line: directive: ...`, so nothing is silently dropped.
/// Directives that only turn off something unsupported (`nomail`,
/// `noshred`, `norenamecopy`) and those without effect unless an
/// unsupported one is set (`uncompresscmd`, only used to mail logs) are
/// accepted.
///
/// Here (not in DiskWatch) because it is configuration syntax, like the
/// YAML reader beside it: it throws the same `ConfigError` (file, line,
/// key) and DiskWatch keeps only the typed rules.
struct LogrotateImport {
    /// One stanza's rule and where it was defined.
    struct Imported: Equatable {
        var rule: LogRotationConfig
        var file: String
        var line: Int
    }

    /// logrotate's rotation criterion: exactly one per stanza (the last given wins).
    enum Criterion: Equatable {
        case size(Int64)
        case frequency(LogRotationConfig.Frequency)
    }

    /// logrotate's `struct logInfo` as far as guardian maps it.
    struct Settings {
        var rule: LogRotationConfig
        var criterion = Criterion.size(1 << 20)

        /// logrotate's built-in defaults (config.c `readAllConfigPaths`).
        static var logrotateDefaults: Settings {
            var r = LogRotationConfig(paths: [], rotate: 0)
            r.create = false
            r.sharedScripts = false
            return Settings(rule: r)
        }
    }

    static let maxNesting = 16
    /// logrotate's default taboo extensions: files of an included directory
    /// whose names end so are skipped (`*EXT`, matched with FNM_PERIOD).
    static let tabooExtensions = [
        ",v", ".bak", ".cfsaved", ".disabled", ".dpkg-bak", ".dpkg-del", ".dpkg-dist", ".dpkg-new", ".dpkg-old",
        ".dpkg-tmp", ".rhn-cfg-tmp-*", ".rpmnew", ".rpmorig", ".rpmsave", ".swp", ".ucf-dist", ".ucf-new", ".ucf-old", "~",
    ]

    private(set) var imported: [Imported] = []
    private var defaults = Settings.logrotateDefaults
    private var depth = 0
    /// Top-level directives only (`defaults:`): stanzas and includes are skipped.
    private var defaultsOnly = false

    /// Reads `path` (a file or a logrotate.d-style directory), after the
    /// top-level directives of `defaults` if given.
    static func read(path: String, defaults: String? = nil) throws -> [Imported] {
        var reader = LogrotateImport()
        if let defaults {
            reader.defaultsOnly = true
            try reader.readFile(defaults)
            reader.defaultsOnly = false
        }
        try reader.readPath(path, from: nil)
        return reader.imported
    }

    /// Parses configuration text (tests, and `readFile`).
    static func parse(_ text: String, file: String) throws -> [Imported] {
        var reader = LogrotateImport()
        try reader.parse(text, file: file)
        return reader.imported
    }

    // MARK: - Files and directories

    private mutating func readPath(_ path: String, from origin: (file: String, line: Int)?) throws {
        func fail(_ message: String) -> ConfigError {
            ConfigError(file: origin?.file ?? path, line: origin?.line ?? 0, key: origin == nil ? "" : "include", message: message)
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw fail("cannot read \(path): \(String(cString: strerror(errno)))") }
        if st.st_mode & S_IFMT == S_IFDIR {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: path)
            } catch {
                throw fail("cannot list the directory \(path): \(error.localizedDescription)")
            }
            let kept = names.filter(Self.isConfigName).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            for name in kept {
                let file = path.hasSuffix("/") ? path + name : path + "/" + name
                var fst = stat()
                // logrotate ignores what is not a regular file (subdirectories too).
                guard stat(file, &fst) == 0, fst.st_mode & S_IFMT == S_IFREG else { continue }
                try readFile(file)
            }
        } else {
            try readFile(path)
        }
    }

    /// logrotate's `checkFile`: not `.`/`..`, no taboo extension.
    static func isConfigName(_ name: String) -> Bool {
        if name == "." || name == ".." { return false }
        return !tabooExtensions.contains { fnmatch("*" + $0, name, FNM_PERIOD) == 0 }
    }

    private mutating func readFile(_ file: String) throws {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ConfigError(file: file, line: 0, key: "", message: "cannot read the file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ConfigError(file: file, line: 0, key: "", message: "cannot stat the file (\(String(cString: strerror(errno))))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw ConfigError(file: file, line: 0, key: "", message: "is not a regular file") }
        // logrotate (as root) ignores a configuration others could have
        // written; importing it would rotate what logrotate does not.
        if geteuid() == 0 {
            if st.st_mode & 0o022 != 0 {
                throw ConfigError(file: file, line: 0, key: "", message: String(format: "is writable by group or others (mode %04o), so logrotate ignores it; make it 0644 (chmod go-w) to import it", st.st_mode & 0o7777))
            }
            if st.st_uid != 0 {
                throw ConfigError(file: file, line: 0, key: "", message: "is not owned by root, so logrotate ignores it; chown root to import it")
            }
        }
        // From the descriptor checked above (no second lookup of the name).
        let data: Data
        do {
            data = try FileHandle(fileDescriptor: fd, closeOnDealloc: false).readToEnd() ?? Data()
        } catch {
            throw ConfigError(file: file, line: 0, key: "", message: "cannot read the file (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, line: 0, key: "", message: "the file is not UTF-8 text")
        }
        try parse(text, file: file)
    }

    // MARK: - The syntax

    /// A stanza being defined.
    private struct Open {
        var settings: Settings
        var patterns: [String]
        /// The path list as written (`$1` of shared scripts).
        var text: String
        var line: Int
    }

    private enum ScriptKind: String { case prerotate, postrotate, firstaction, lastaction, preremove }

    private mutating func parse(_ text: String, file: String) throws {
        // By scalars: "\r\n" is one Character, and logrotate splits at "\n" only.
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0) }
        var stanza: Open?
        // A path list runs until `{`, over several lines if need be.
        var pathText: String?
        var pathLine = 0
        var script: (kind: ScriptKind, text: String, line: Int)?

        func error(_ line: Int, _ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, line: line, key: key, message: message)
        }

        for (index, chars) in lines.enumerated() {
            let lineNo = index + 1
            var i = 0
            func skipBlanks() { while i < chars.count, chars[i] == " " || chars[i] == "\t" || chars[i] == "\r" { i += 1 } }

            if var s = script {
                skipBlanks()
                var j = i
                while j < chars.count, chars[j].properties.isAlphabetic, chars[j].isASCII { j += 1 }
                if String(String.UnicodeScalarView(chars[i..<j])) == "endscript" {
                    if !(defaultsOnly && stanza != nil) {
                        try setScript(s.kind, s.text, in: &stanza, file: file, line: s.line)
                    }
                    script = nil
                    i = j
                } else {
                    s.text += String(String.UnicodeScalarView(chars)) + "\n"
                    script = s
                    continue
                }
            }

            while i <= chars.count {
                if var p = pathText {
                    // Inside a path list: comments are whole lines (from a `#` at a line's start).
                    var k = i
                    while k < chars.count, chars[k] == " " || chars[k] == "\t" { k += 1 }
                    if k < chars.count, chars[k] == "#", p.last == "\n" || p.isEmpty {
                        // A comment line: skipped, its line end kept (logrotate's parseGlobString).
                        pathText = p + "\n"
                        break
                    }
                    var found = false
                    while i < chars.count {
                        let c = chars[i]
                        i += 1
                        if c == "}" { throw error(lineNo, "", "unexpected } (missing previous '{')") }
                        if c == "{" { found = true; break }
                        p.unicodeScalars.append(c)
                    }
                    if !found {
                        pathText = p + "\n"
                        break
                    }
                    pathText = nil
                    guard let patterns = try? ShellWords.split(p.replacingOccurrences(of: "\r", with: " ")) else {
                        throw error(pathLine, "", "error parsing filename (an unterminated quote)")
                    }
                    guard !patterns.isEmpty else { throw error(pathLine, "", "{ expected after log file name(s)") }
                    for pattern in patterns {
                        guard pattern.hasPrefix("/") else {
                            throw error(pathLine, "", "\"\(pattern)\": guardian needs absolute log paths (a path relative to logrotate's working directory or ~ is not imported)")
                        }
                        guard !pattern.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                            throw error(pathLine, "", "\"\(pattern)\" contains a control character")
                        }
                        guard !pattern.split(separator: "/").contains("..") else {
                            throw error(pathLine, "", "\"\(pattern)\" must not contain .. components")
                        }
                    }
                    stanza = Open(settings: defaults, patterns: patterns, text: p, line: pathLine)
                    continue
                }
                skipBlanks()
                guard i < chars.count else { break }
                let c = chars[i]
                if c == "#" { break }
                if c.isASCII, c.properties.isAlphabetic {
                    var j = i
                    while j < chars.count, chars[j].isASCII, chars[j].properties.isAlphabetic { j += 1 }
                    let key = String(String.UnicodeScalarView(chars[i..<j]))
                    if j < chars.count, !(chars[j] == " " || chars[j] == "\t" || chars[j] == "\r" || chars[j] == "=") {
                        throw error(lineNo, key, "keyword not properly separated (found \"\(Character(chars[j]))\")")
                    }
                    i = j
                    // The rest of the line, as logrotate's isolateLine (no `=`) and isolateValue (`=` allowed, a value required).
                    let rest = String(String.UnicodeScalarView(chars[i...])).trimmingCharacters(in: .whitespacesAndNewlines)
                    func value() throws -> String {
                        var v = Substring(rest)
                        if v.hasPrefix("=") { v = v.dropFirst().drop { $0 == " " || $0 == "\t" } }
                        guard !v.isEmpty else { throw error(lineNo, key, "argument expected") }
                        return String(v)
                    }
                    if let kind = ScriptKind(rawValue: key) {
                        // logrotate keeps the rest of this line as the script's start.
                        script = (kind, rest.isEmpty ? "\n" : " " + rest + "\n", lineNo)
                        break
                    }
                    // `defaults:` takes the top-level directives only.
                    if defaultsOnly, stanza != nil || key == "include" { break }
                    var settings = stanza?.settings ?? defaults
                    let consumesLine = try apply(key, value: value, line: rest, to: &settings, inStanza: stanza != nil, file: file, lineNo: lineNo)
                    if key == "include" {
                        depth += 1
                        defer { depth -= 1 }
                        guard depth <= Self.maxNesting else { throw error(lineNo, key, "include nesting too deep") }
                        try readPath(try value(), from: (file, lineNo))
                        break
                    }
                    if stanza != nil { stanza?.settings = settings } else { defaults = settings }
                    if consumesLine { break }
                    continue
                }
                if c == "/" || c == "\"" || c == "'" || c == "~" {
                    if stanza != nil { throw error(lineNo, "", "unexpected log filename (inside a log's { })") }
                    pathText = ""
                    pathLine = lineNo
                    continue
                }
                if c == "}" {
                    guard let s = stanza else { throw error(lineNo, "", "unexpected }") }
                    i += 1
                    skipBlanks()
                    if i < chars.count { throw error(lineNo, "", "unexpected text after }") }
                    if !defaultsOnly { try finish(s, file: file) }
                    stanza = nil
                    break
                }
                throw error(lineNo, "", "lines must begin with a keyword or a filename (possibly in double quotes)")
            }
        }
        if let s = script { throw error(s.line, s.kind.rawValue, "no endscript") }
        if pathText != nil { throw error(pathLine, "", "{ expected after log file name(s)") }
        if let s = stanza { throw error(s.line, "", "this log's { has no closing }") }
    }

    /// A script onto the stanza, or at the top level onto the defaults (as logrotate does).
    private mutating func setScript(_ kind: ScriptKind, _ text: String, in stanza: inout Open?, file: String, line: Int) throws {
        var r = stanza?.settings.rule ?? defaults.rule
        let script = LogRotationConfig.RotationScript.shell(text)
        switch kind {
        case .prerotate: r.preRotate = script
        case .postrotate: r.postRotate = script
        case .firstaction: r.firstAction = script
        case .lastaction: r.lastAction = script
        case .preremove:
            throw ConfigError(file: file, line: line, key: "preremove", message: "not supported by guardian (no script before an archive is deleted); remove it or keep this log with logrotate")
        }
        if stanza != nil { stanza?.settings.rule = r } else { defaults.rule = r }
    }

    /// One directive onto `s`. Returns whether it took the rest of the line.
    private func apply(
        _ key: String, value: () throws -> String, line rest: String, to s: inout Settings, inStanza: Bool, file: String, lineNo: Int
    ) throws -> Bool {
        func error(_ message: String) -> ConfigError { ConfigError(file: file, line: lineNo, key: key, message: message) }
        func refuse(_ why: String) -> ConfigError { error("not supported by guardian (\(why)); remove it or keep this log with logrotate") }
        switch key {
        case "compress": s.rule.compress = true
        case "nocompress": s.rule.compress = false
        case "delaycompress": s.rule.delayCompress = true
        case "nodelaycompress": s.rule.delayCompress = false
        case "allowhardlink": s.rule.allowHardLink = true
        case "noallowhardlink": s.rule.allowHardLink = false
        case "sharedscripts": s.rule.sharedScripts = true
        case "nosharedscripts": s.rule.sharedScripts = false
        case "copytruncate": s.rule.copyTruncate = true
        case "nocopytruncate": s.rule.copyTruncate = false
        case "copy": s.rule.copy = true
        case "nocopy": s.rule.copy = false
        case "ifempty": s.rule.notIfEmpty = false
        case "notifempty": s.rule.notIfEmpty = true
        case "dateext": s.rule.dateExt = true
        case "nodateext": s.rule.dateExt = false
        case "dateyesterday": s.rule.dateYesterday = true
        case "missingok": s.rule.missingOK = true
        case "nomissingok": s.rule.missingOK = false
        case "nocreate": s.rule.create = false
        case "nocreateolddir": s.rule.createOldDir = nil
        case "noolddir": s.rule.oldDir = nil
        // Off already: guardian mails nothing, shreds nothing, renames no copy.
        case "nomail", "noshred", "norenamecopy": break
        // Only used to mail logs (logrotate's uncompress_prog).
        case "uncompresscmd": _ = try path(try value(), key: key, error: error)
        case "errors":
            // Deprecated and ignored by logrotate 3.21 itself.
            return true
        case "hourly": s.criterion = .frequency(.hourly)
        case "daily": s.criterion = .frequency(.daily)
        case "monthly": s.criterion = .frequency(.monthly)
        case "weekly":
            s.criterion = .frequency(.weekly)
            let arg = rest.trimmingCharacters(in: .whitespaces)
            guard !arg.isEmpty else { return true }
            guard let day = UInt(arg), day <= 7 else { throw error("bad weekly directive \"\(arg)\" (a weekday 0-6, or 7)") }
            // guardian's weekly is logrotate's default: Sunday, or a week gone.
            guard day == 0 else { throw refuse("weekly on another day than Sunday (0)") }
            return true
        case "yearly": throw refuse("no yearly schedule; use monthly with rotate 12 times as many")
        case "size", "minsize", "maxsize":
            let size = try Self.size(try value(), error: error)
            switch key {
            case "size": s.criterion = .size(size)
            case "minsize": s.rule.minSize = size
            default: s.rule.maxSize = size
            }
            return true
        case "rotate":
            let v = try value()
            guard let n = Self.cInteger(v), n >= -1, n <= 100_000 else { throw error("bad rotation count \"\(v)\"") }
            s.rule.rotate = Int(n)
            return true
        case "start":
            let v = try value()
            guard let n = Self.cInteger(v), n >= 0, n <= 100_000 else { throw error("bad start count \"\(v)\"") }
            s.rule.start = Int(n)
            return true
        case "minage", "maxage":
            let v = try value()
            guard let n = Self.cInteger(v), n >= 0, n <= 1_000_000 else { throw error("bad \(key == "minage" ? "minimum" : "maximum") age \"\(v)\" (days)") }
            let d: Duration? = n == 0 ? nil : .seconds(n * 86400)
            if key == "minage" { s.rule.minAge = d } else { s.rule.maxAge = d }
            return true
        case "create":
            s.rule.create = true
            let (mode, owner, group) = try Self.modeOwnerGroup(rest, withMode: true, error: error)
            if let mode { s.rule.createMode = mode }
            if let owner { s.rule.createOwner = owner }
            if let group { s.rule.createGroup = group }
            return true
        case "createolddir":
            let (mode, owner, group) = try Self.modeOwnerGroup(rest, withMode: true, error: error)
            var c = s.rule.createOldDir ?? LogRotationConfig.FileCreation()
            if let mode { c.mode = mode }
            if let owner { c.owner = owner }
            if let group { c.group = group }
            s.rule.createOldDir = c
            return true
        case "su":
            let words = rest.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard !words.isEmpty else { throw error("no user for su") }
            guard words.count >= 2 else { throw error("no group for su") }
            guard words.count == 2 else { throw error("extra arguments for su") }
            s.rule.suUser = words[0]
            s.rule.suGroup = words[1]
            return true
        case "dateformat":
            let v = try value()
            if let problem = LogRotationConfig.dateFormatProblem(v) { throw error("\"\(v)\" \(problem)") }
            s.rule.dateFormat = v
            return true
        case "olddir":
            let v = try path(try value(), key: key, error: error)
            guard !v.hasPrefix("~") else { throw error("\"\(v)\": a path under ~ is not imported; give it absolute") }
            guard !v.split(separator: "/").contains("..") else { throw error("\"\(v)\" must not contain .. components") }
            s.rule.oldDir = v
            return true
        case "extension":
            s.rule.fileExtension = try value()
            return true
        case "compresscmd":
            let v = try path(try value(), key: key, error: error)
            s.rule.compressCommand = v
            // Like logrotate: a known program sets its extension (over an
            // earlier compressext), another keeps the previous one.
            if let ext = LogRotationConfig.compressExtension(ofCommand: v) { s.rule.compressExt = ext }
            return true
        case "compressext":
            s.rule.compressExt = try path(try value(), key: key, error: error)
            return true
        case "compressoptions":
            let words = try? ShellWords.split(rest)
            guard let words, !words.isEmpty else { throw error("invalid compression options") }
            s.rule.compressOptions = words
            return true
        case "include":
            guard !inStanza else { throw error("include inside a log's { } is not imported (logrotate would read the file's top-level directives into this log)") }
            let v = try value()
            guard v.hasPrefix("/") else { throw error("\"\(v)\": include of a relative path or ~ is not imported; give it absolute") }
            return true
        case "mail", "mailfirst", "maillast": throw refuse("guardian mails no logs")
        case "shred", "shredcycles": throw refuse("guardian deletes archives without shredding them")
        case "renamecopy": throw refuse("no renamecopy")
        case "addextension": throw refuse("no addextension")
        case "datehourago": throw refuse("no datehourago")
        case "tabooext", "taboopat": throw refuse("include reads a directory with logrotate's default taboo extensions only")
        case "ignoreduplicates": throw refuse("a log named by two rules is an error")
        default: throw error("unknown logrotate directive")
        }
        return false
    }

    /// logrotate's readPath: one word of printable characters.
    private func path(_ v: String, key: String, error: (String) -> ConfigError) throws -> String {
        guard !v.unicodeScalars.contains(where: { $0 == " " || $0 == "\t" || $0.properties.generalCategory == .control }) else {
            throw error("bad \(key) path \"\(v)\"")
        }
        return v
    }

    /// The end of a stanza: its rule, with logrotate's interplay of directives resolved.
    private mutating func finish(_ s: Open, file: String) throws {
        var r = s.settings.rule
        r.paths = s.patterns
        r.scriptPattern = s.text
        switch s.settings.criterion {
        case .size(let n):
            r.size = n == 1 << 20 ? nil : n
            r.frequency = nil
        case .frequency(let f):
            r.size = nil
            r.frequency = f
        }
        // createolddir acts only with an olddir (logrotate ignores it otherwise).
        if r.oldDir == nil { r.createOldDir = nil }
        // copy and copytruncate leave the log in place: logrotate creates nothing then.
        if r.copy || r.copyTruncate {
            r.create = false
            r.createMode = nil
            r.createOwner = nil
            r.createGroup = nil
        }
        for pattern in r.paths {
            if let other = imported.first(where: { $0.rule.paths.contains(pattern) }) {
                throw ConfigError(file: file, line: s.line, key: "", message: "duplicate log entry for \(pattern) (also at \(other.file):\(other.line))")
            }
        }
        imported.append(Imported(rule: r, file: file, line: s.line))
    }

    // MARK: - Values

    /// strtol/strtoull with base 0: `0x1f` hex, `017` octal, else decimal.
    static func cInteger(_ text: String) -> Int64? {
        var s = Substring(text)
        var negative = false
        if s.hasPrefix("-") { negative = true; s = s.dropFirst() } else if s.hasPrefix("+") { s = s.dropFirst() }
        guard !s.isEmpty else { return nil }
        let value: Int64?
        if s.lowercased().hasPrefix("0x") {
            value = Int64(s.dropFirst(2), radix: 16)
        } else if s.hasPrefix("0"), s.count > 1 {
            value = Int64(s.dropFirst(), radix: 8)
        } else {
            value = Int64(s, radix: 10)
        }
        guard let value, !s.dropFirst(s.lowercased().hasPrefix("0x") ? 2 : 0).contains(where: { $0 == "+" || $0 == "-" }) else { return nil }
        return negative ? -value : value
    }

    /// `size 100`, `100k`/`100K`, `100M`, `1G` (binary multiples, logrotate's units).
    static func size(_ text: String, error: (String) -> ConfigError) throws -> Int64 {
        guard let last = text.last else { throw error("argument expected") }
        var digits = text
        var multiplier: Int64 = 1
        switch last {
        case "k", "K": multiplier = 1024
        case "M": multiplier = 1024 * 1024
        case "G": multiplier = 1024 * 1024 * 1024
        default:
            guard last.isASCII, last.isNumber else { throw error("unknown unit '\(last)' (k, M or G)") }
        }
        if multiplier != 1 { digits.removeLast() }
        guard let n = cInteger(digits), n >= 0, n <= Int64.max / multiplier else { throw error("bad size '\(text)'") }
        return n * multiplier
    }

    /// logrotate's readModeUidGid: `MODE [OWNER [GROUP]]` or `OWNER GROUP`
    /// (nil where not given: the previous value stays).
    static func modeOwnerGroup(_ text: String, withMode: Bool, error: (String) -> ConfigError) throws -> (UInt16?, String?, String?) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = words.first else { return (nil, nil, nil) }
        if withMode, first.allSatisfy({ ("0"..."7").contains($0) }) {
            guard words.count <= 3 else { throw error("extra arguments") }
            guard let mode = UInt16(first, radix: 8), mode <= 0o7777 else { throw error("bad mode \"\(first)\"") }
            return (mode, words.count > 1 ? words[1] : nil, words.count > 2 ? words[2] : nil)
        }
        guard words.count <= 2 else { throw error("extra arguments") }
        return (nil, first, words.count > 1 ? words[1] : nil)
    }
}

extension GuardianConfig {
    /// `disk.logs:`: guardian's own rules and `logrotate:` imports, each
    /// rule with where it came from (`file:line` of a logrotate stanza, nil
    /// for a YAML rule), for `check-config`.
    static func parseLogEntries(_ node: ConfigNode) throws -> [(rule: LogRotationConfig, origin: String?)] {
        var out: [(rule: LogRotationConfig, origin: String?)] = []
        for entry in try node.sequence() {
            let rules: [(rule: LogRotationConfig, origin: String?)]
            if case .mapping = entry.node, try entry.mapping().has("logrotate") {
                rules = try parseLogrotateEntry(entry).map { ($0.rule, "\($0.file):\($0.line)") }
            } else {
                rules = [(try parseLogRotation(entry), nil)]
            }
            // Like logrotate's "duplicate log entry": an imported pattern in
            // one rule only (also written as a YAML rule, or imported twice).
            for r in rules {
                for pattern in r.rule.paths {
                    if let other = out.first(where: { $0.rule.paths.contains(pattern) && ($0.origin != nil || r.origin != nil) }) {
                        let here = r.origin.map { " (from \($0))" } ?? ""
                        let there = other.origin.map { "logrotate \($0)" } ?? "a YAML rule"
                        throw entry.error("\(pattern)\(here) is already rotated by \(there); give each log one rule")
                    }
                }
            }
            out += rules
        }
        return out
    }

    /// `- logrotate: /etc/logrotate.d/app` (a file or a directory), with
    /// `defaults: /etc/logrotate.conf` (its top-level directives first) and
    /// guardian's own keys that logrotate has no directive for
    /// (`emergency-truncate`, `postrotate-timeout`). Everything else comes
    /// from the logrotate file.
    static func parseLogrotateEntry(_ node: ConfigNode) throws -> [LogrotateImport.Imported] {
        let m = try node.mapping()
        let path = try m.required("logrotate").absolutePath()
        let defaults = try m.optional("defaults") { try $0.absolutePath() }
        let timeout = try m.optional("postrotate-timeout") { try $0.duration() }
        let truncate = try m.optional("emergency-truncate", parseEmergencyTruncate)
        do {
            try m.finish()
        } catch let e as ConfigError {
            throw ConfigError(
                file: e.file, line: e.line, key: e.key,
                message: "a logrotate: entry takes its rules from the logrotate file; beside it only defaults:, emergency-truncate: and postrotate-timeout: (guardian's own) may be given")
        }
        var rules: [LogrotateImport.Imported]
        do {
            rules = try LogrotateImport.read(path: path, defaults: defaults)
        } catch let e as ConfigError {
            throw ConfigError(file: e.file, line: e.line, key: e.key, message: e.message + " (imported by \(node.file):\(node.line): \(node.path).logrotate)")
        }
        if rules.isEmpty { throw node.error("\(path) defines no log (no path { ... } stanza)") }
        for i in rules.indices {
            if let timeout { rules[i].rule.postRotateTimeout = timeout }
            if let truncate { rules[i].rule.emergencyTruncate = truncate }
        }
        return rules
    }
}

extension GuardianConfig {
    /// One `disk.logs` rule for `check-config`, in the YAML shape: every
    /// setting that is not guardian's default, scripts as their shell text.
    static func describeLogRule(_ l: LogRotationConfig, origin: String?) -> String {
        func q(_ s: String) -> String { "\"\(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n"))\"" }
        func d(_ v: Duration) -> String { Units.formatDuration(v) }
        let base = LogRotationConfig(paths: [])
        var out = ""
        if let origin { out += "    # imported from logrotate \(origin)\n" }
        out += "    - paths: [\(l.paths.map(q).joined(separator: ", "))]\n      rotate: \(l.rotate)\n"
        if let s = l.size { out += "      size: \(s)\n" }
        if let f = l.frequency { out += "      frequency: \(f.rawValue)\n" }
        if l.size == nil, l.frequency == nil { out += "      # rotated at 1 MiB (no size or frequency given)\n" }
        out += "      compress: \(l.compress)\n      copytruncate: \(l.copyTruncate)\n"
        func flag(_ name: String, _ v: Bool, _ def: Bool) { if v != def { out += "      \(name): \(v)\n" } }
        flag("delaycompress", l.delayCompress, base.delayCompress)
        flag("dateext", l.dateExt, base.dateExt)
        flag("missingok", l.missingOK, base.missingOK)
        flag("notifempty", l.notIfEmpty, base.notIfEmpty)
        flag("copy", l.copy, base.copy)
        flag("allowhardlink", l.allowHardLink, base.allowHardLink)
        flag("dateyesterday", l.dateYesterday, base.dateYesterday)
        flag("sharedscripts", l.sharedScripts, base.sharedScripts)
        if let v = l.minSize { out += "      minsize: \(v)\n" }
        if let v = l.maxSize { out += "      maxsize: \(v)\n" }
        if let v = l.maxAge { out += "      maxage: \(d(v))\n" }
        if let v = l.minAge { out += "      minage: \(d(v))\n" }
        if l.start != base.start { out += "      start: \(l.start)\n" }
        if let v = l.dateFormat { out += "      dateformat: \(q(v))\n" }
        if let v = l.fileExtension { out += "      extension: \(q(v))\n" }
        if let v = l.oldDir { out += "      olddir: \(q(v))\n" }
        if let c = l.createOldDir {
            out += "      createolddir: \(q([c.mode.map { String($0, radix: 8) }, c.owner, c.group].compactMap { $0 }.joined(separator: " ")))\n"
        }
        if !l.copy, !l.copyTruncate {
            if !l.create {
                out += "      create: false\n"
            } else if l.createMode != nil || l.createOwner != nil || l.createGroup != nil {
                let mode = l.createMode.map { "0" + String($0, radix: 8) } ?? "keep"
                out += "      create: \(q([mode, l.createOwner, l.createGroup].compactMap { $0 }.joined(separator: " ")))\n"
            }
        }
        if let u = l.suUser { out += "      su: \(q([u, l.suGroup].compactMap { $0 }.joined(separator: " ")))\n" }
        if let v = l.compressCommand { out += "      compresscmd: \(q(v))\n" }
        if let v = l.compressOptions { out += "      compressoptions: [\(v.map(q).joined(separator: ", "))]\n" }
        if let v = l.compressExt { out += "      compressext: \(q(v))\n" }
        func script(_ name: String, _ s: LogRotationConfig.RotationScript?) {
            switch s {
            case .argv(let a): out += "      \(name): [\(a.map(q).joined(separator: ", "))]\n"
            case .shell(let text): out += "      \(name): \(q(text.trimmingCharacters(in: .whitespacesAndNewlines)))  # sh -c\n"
            case nil: break
            }
        }
        script("firstaction", l.firstAction)
        script("prerotate", l.preRotate)
        script("postrotate", l.postRotate)
        script("lastaction", l.lastAction)
        if l.postRotateTimeout != base.postRotateTimeout { out += "      postrotate-timeout: \(d(l.postRotateTimeout))\n" }
        switch l.emergencyTruncate {
        case .automatic: break
        case .off: out += "      emergency-truncate: off\n"
        case .keep(let n): out += "      emergency-truncate: keep \(n)\n"
        }
        return out
    }
}
