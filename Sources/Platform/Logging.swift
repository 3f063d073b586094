import CSystemd
import Foundation
import Logging

extension Logger {
    /// Logs one of guardian's events: a constant message, its MESSAGE_ID and
    /// the details as metadata (which journald receives as `GUARDIAN_*` fields).
    public func event(
        _ event: GuardianEvent,
        level: Logger.Level = .info,
        _ metadata: Logger.Metadata = [:],
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        var all = metadata
        all[JournalLogHandler.messageIDKey] = .string(event.id)
        all["event"] = .string(event.name)
        log(level: level, Logger.Message(stringLiteral: event.message), metadata: all, file: file, function: function, line: line)
    }
}

/// Where log lines go.
public enum LogTarget: String, Sendable, CaseIterable {
    /// journald when stderr is connected to the journal (systemd sets
    /// `JOURNAL_STREAM`), readable lines on stderr otherwise.
    case auto
    case journald
    case stderr

    public func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) -> LogTarget {
        guard self == .auto else { return self }
        if let forced = environment["GUARDIAN_LOG_TARGET"].flatMap(LogTarget.init(rawValue:)), forced != .auto {
            return forced
        }
        guard let stream = environment["JOURNAL_STREAM"] else { return .stderr }
        // JOURNAL_STREAM is "device:inode" of the stream systemd connected.
        var st = stat()
        guard fstat(2, &st) == 0 else { return .stderr }
        return stream == "\(st.st_dev):\(st.st_ino)" ? .journald : .stderr
    }
}

public enum GuardianLogging {
    /// Installs guardian's log handler process-wide. Call once, at start-up.
    public static func bootstrap(target: LogTarget, level: Logger.Level) {
        let resolved = target.resolved()
        LoggingSystem.bootstrap { label in
            switch resolved {
            case .journald: var h = JournalLogHandler(label: label); h.logLevel = level; return h
            default: var h = StderrLogHandler(label: label); h.logLevel = level; return h
            }
        }
    }
}

/// Writes to journald through the native protocol (`sd_journal_sendv`): a
/// constant MESSAGE, PRIORITY from the level, SYSLOG_IDENTIFIER=guardian, a
/// MESSAGE_ID per event kind, and every metadata item as an upper-case
/// `GUARDIAN_<KEY>` field.
public struct JournalLogHandler: LogHandler {
    public static let messageIDKey = "message_id"
    public static let identifier = "guardian"

    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    public let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `wal_size` → `GUARDIAN_WAL_SIZE`; anything not A-Z0-9_ becomes `_`.
    public static func fieldName(_ key: String) -> String {
        let upper = key.uppercased().map { c -> Character in
            (c.isASCII && (c.isLetter || c.isNumber)) ? c : "_"
        }
        return "GUARDIAN_" + String(upper)
    }

    public func log(event: LogEvent) {
        var fields: [String] = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=\(Self.identifier)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
        ]
        let merged = mergedMetadata(event)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            if key == Self.messageIDKey {
                fields.append("MESSAGE_ID=\(value)")
            } else {
                fields.append("\(Self.fieldName(key))=\(value)")
            }
        }
        Self.send(fields)
    }

    static func send(_ fields: [String]) {
        // Keep every C string alive until sd_journal_sendv returns.
        let buffers = fields.map { Array($0.utf8) }
        var iovecs: [iovec] = []
        iovecs.reserveCapacity(buffers.count)
        func build(_ i: Int) {
            if i == buffers.count {
                _ = csd_journal_sendv(iovecs, Int32(iovecs.count))
                return
            }
            buffers[i].withUnsafeBytes { raw in
                iovecs.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count))
                build(i + 1)
            }
        }
        build(0)
    }
}

extension LogHandler {
    /// The handler's metadata, the provider's, the event's and its error, later ones winning.
    func mergedMetadata(_ event: LogEvent) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        if let error = event.error { merged["error"] = .string("\(error)") }
        return merged
    }
}

/// Readable single lines on stderr, for terminals and tests:
/// `2026-11-25T10:00:00.123Z info database opened db=/data/app.db wal_size=0`.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    public let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let lock = NSLock()

    public func log(event: LogEvent) {
        var merged = mergedMetadata(event)
        merged.removeValue(forKey: JournalLogHandler.messageIDKey)
        merged.removeValue(forKey: "event")
        var line = "\(Timestamps.iso8601(Date())) \(event.level.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(event.message)"
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            let text = "\(value)"
            line += text.contains(" ") || text.isEmpty ? " \(key)=\"\(text)\"" : " \(key)=\(text)"
        }
        line += "\n"
        Self.lock.lock()
        FileHandle.standardError.write(Data(line.utf8))
        Self.lock.unlock()
    }
}

public enum Timestamps {
    /// RFC 3339 with milliseconds, UTC: `2026-11-25T10:00:00.123Z`.
    public static func iso8601(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        let ms = Int((date.timeIntervalSince1970 - Double(t)) * 1000)
        // Digits written straight into 24 bytes (String(format:) costs more
        // than everything else in an idle database's status).
        let fields: [(Int, Int, UInt8)] = [
            (Int(parts.tm_year) + 1900, 4, UInt8(ascii: "-")), (Int(parts.tm_mon) + 1, 2, UInt8(ascii: "-")),
            (Int(parts.tm_mday), 2, UInt8(ascii: "T")), (Int(parts.tm_hour), 2, UInt8(ascii: ":")),
            (Int(parts.tm_min), 2, UInt8(ascii: ":")), (Int(parts.tm_sec), 2, UInt8(ascii: ".")),
            (max(0, min(ms, 999)), 3, UInt8(ascii: "Z")),
        ]
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        for (value, width, separator) in fields {
            var v = max(0, value)
            var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width)
            for i in stride(from: width - 1, through: 0, by: -1) {
                digits[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            bytes.append(contentsOf: digits)
            bytes.append(separator)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses RFC 3339 (`2026-11-25T10:00:00Z`, with optional fraction and offset).
    public static func parse(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }
}
