import Foundation

/// logrotate's calendar: when hourly/daily/weekly/monthly logs are due,
/// and the dateext stamps. Local time, like logrotate.
extension LogRotator {
    static func calendar(_ date: Date) -> tm {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&t, &parts)
        return parts
    }

    /// Whole calendar days from `a` to `b` (times of day ignored).
    static func daysBetween(_ a: tm, _ b: tm) -> Int {
        var x = a
        var y = b
        x.tm_hour = 12; x.tm_min = 0; x.tm_sec = 0; x.tm_isdst = -1
        y.tm_hour = 12; y.tm_min = 0; y.tm_sec = 0; y.tm_isdst = -1
        return Int((Double(mktime(&y) - mktime(&x)) / 86400).rounded())
    }

    static func isDue(_ frequency: LogRotationConfig.Frequency, last: Date, now: Date) -> Bool {
        let l = calendar(last)
        let n = calendar(now)
        let sameYear = l.tm_year == n.tm_year
        let sameMonth = sameYear && l.tm_mon == n.tm_mon
        let sameDay = sameMonth && l.tm_mday == n.tm_mday
        if sameDay, l.tm_hour == n.tm_hour { return false }
        switch frequency {
        case .hourly: return true
        case .daily: return !sameDay
        case .weekly:
            let days = daysBetween(l, n)
            return days >= 7 || (days >= 1 && n.tm_wday == 0)
        case .monthly: return !sameMonth
        }
    }

    static func dateStamp(_ date: Date, format: String) -> String {
        var parts = calendar(date)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
