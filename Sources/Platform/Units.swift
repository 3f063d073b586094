/// Parsers for the units used in guardian's configuration: durations
/// (`250ms`, `1s`, `1h30m`, `7d`), byte sizes (`100MB`, `1GiB`, `512K`) and
/// percentages (`80%`). Each returns nil for malformed input so that the
/// caller can report the key and line.
public enum Units {
    /// The longest duration a setting may have: 100 years (36500d). Longer
    /// ones are refused rather than overflowing a nanosecond count or a clock.
    public static let maxDuration: Duration = .seconds(36500 * 86400)

    /// Go-style durations (`ns us ms s m h`) plus `d` for days. A bare `0` is
    /// zero. Nil when malformed or longer than `maxDuration`.
    public static func duration(_ text: String) -> Duration? {
        guard let seconds = durationSeconds(text), seconds <= maxDuration.seconds else { return nil }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// The length of a well-formed duration in seconds, however long (finite).
    public static func durationSeconds(_ text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s == "0" { return 0 }
        var total: Double = 0
        var index = s.startIndex
        var sawUnit = false
        while index < s.endIndex {
            let numberStart = index
            while index < s.endIndex, s[index].isNumber || s[index] == "." { index = s.index(after: index) }
            guard numberStart < index, let value = Double(s[numberStart..<index]) else { return nil }
            let unitStart = index
            while index < s.endIndex, s[index].isLetter || s[index] == "µ" { index = s.index(after: index) }
            let scale: Double
            switch s[unitStart..<index] {
            case "ns": scale = 1e-9
            case "us", "µs": scale = 1e-6
            case "ms": scale = 1e-3
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "d": scale = 86400
            default: return nil
            }
            total += value * scale
            sawUnit = true
        }
        guard sawUnit, total.isFinite else { return nil }
        return total
    }

    /// The largest byte size a setting may have (an Int64 with room to add).
    public static let maxBytes: Double = 9.2e18

    /// Byte sizes. `KB MB GB TB` are decimal (1000), `KiB MiB GiB TiB` binary,
    /// and logrotate's single letters `k M G` binary. A bare number is bytes.
    /// Nil when malformed or above `maxBytes`.
    public static func bytes(_ text: String) -> Int64? {
        guard let value = byteCount(text), value < maxBytes else { return nil }
        return Int64(value.rounded())
    }

    /// The value of a well-formed byte size, however large (finite).
    public static func byteCount(_ text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces)
        var split = s.startIndex
        while split < s.endIndex, s[split].isNumber || s[split] == "." { split = s.index(after: split) }
        guard split > s.startIndex, let value = Double(s[..<split]) else { return nil }
        let unit = s[split...].trimmingCharacters(in: .whitespaces)
        let scale: Double
        switch unit.lowercased() {
        case "", "b": scale = 1
        case "kb": scale = 1e3
        case "mb": scale = 1e6
        case "gb": scale = 1e9
        case "tb": scale = 1e12
        case "k", "kib": scale = 1024
        case "m", "mib": scale = 1024 * 1024
        case "g", "gib": scale = 1024 * 1024 * 1024
        case "t", "tib": scale = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        let result = value * scale
        guard result >= 0, result.isFinite else { return nil }
        return result
    }

    /// `80%` or `80` → 80.0, within 0...100.
    public static func percent(_ text: String) -> Double? {
        var s = text.trimmingCharacters(in: .whitespaces)
        if s.hasSuffix("%") { s.removeLast() }
        guard let v = Double(s.trimmingCharacters(in: .whitespaces)), v >= 0, v <= 100 else { return nil }
        return v
    }

    /// A short human form of a byte count: `12.3 MB`.
    public static func formatBytes(_ n: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while abs(value) >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// A short human form of a duration: `250ms`, `3.2s`, `5m10s`, `2h3m`.
    public static func formatDuration(_ d: Duration) -> String {
        let ms = d.milliseconds
        if ms < 1000 { return "\(ms)ms" }
        if ms < 60_000 { return String(format: "%.1fs", Double(ms) / 1000) }
        let s = ms / 1000
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\((s % 3600) / 60)m" }
        return "\(s / 86400)d\((s % 86400) / 3600)h"
    }
}

extension Duration {
    /// Whole milliseconds (truncated).
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

import Foundation
