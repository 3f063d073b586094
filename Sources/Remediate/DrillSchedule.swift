import Foundation
import Platform

/// When a database's recovery drills run: every `interval` after the last
/// recorded drill, or weekly at a day and time in local time (`"sun 03:00"`).
/// `nextRun` is pure, so the daemon's timing is tested without waiting.
public enum DrillSchedule: Sendable, Equatable, CustomStringConvertible {
    case every(Duration)
    /// `weekday` as Foundation's Calendar numbers them: 1 = Sunday … 7 = Saturday.
    case weekly(weekday: Int, hour: Int, minute: Int)

    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    static let longDayNames = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

    /// `"sun 03:00"`, `"Sunday 3:00"`; nil when it is not `DAY HH:MM`.
    public static func parseWeekly(_ text: String) -> DrillSchedule? {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true).map { $0.lowercased() }
        guard parts.count == 2 else { return nil }
        guard let day = dayNames.firstIndex(of: parts[0]) ?? longDayNames.firstIndex(of: parts[0]) else { return nil }
        let clock = parts[1].split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 2, (1...2).contains(clock[0].count), clock[1].count == 2,
            clock.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let hour = Int(clock[0]), let minute = Int(clock[1]), (0...23).contains(hour), (0...59).contains(minute)
        else { return nil }
        return .weekly(weekday: day + 1, hour: hour, minute: minute)
    }

    public var description: String {
        switch self {
        case .every(let d): "every \(Units.formatDuration(d))"
        case .weekly: "weekly \(configValue) (local time)"
        }
    }

    /// As written in the configuration: `7d`, or `sun 03:00` for `weekly:`.
    public var configValue: String {
        switch self {
        case .every(let d): Units.formatDuration(d)
        case .weekly(let day, let hour, let minute): "\(Self.dayNames[(day + 6) % 7]) \(String(format: "%02d:%02d", hour, minute))"
        }
    }

    /// When the next drill is due.
    ///
    /// - `last`: when the last recorded drill of this database started (nil:
    ///   none yet). After a restart the schedule continues from it.
    /// - `catchUp`: how long after `now` a drill that is already overdue (or,
    ///   for an interval, the very first one) runs, so that replication can
    ///   settle after a start; an interval shorter than it is used instead.
    ///
    /// Interval: `last + interval`; overdue or no history: `now + min(interval, catchUp)`.
    /// Weekly: the first slot after `last` (no history: after `now`); a slot
    /// missed while guardian was down runs at `now + catchUp`.
    public func nextRun(after last: Date?, now: Date, catchUp: Duration, timeZone: TimeZone = .current) -> Date {
        // A last drill "in the future" (the clock was set back) counts as now.
        let last = last.map { min($0, now) }
        switch self {
        case .every(let interval):
            let soon = now.addingTimeInterval(min(interval, catchUp).seconds)
            guard let last else { return soon }
            let due = last.addingTimeInterval(interval.seconds)
            return due > now ? due : soon
        case .weekly:
            guard let last else { return nextSlot(after: now, timeZone: timeZone) }
            let slot = nextSlot(after: last, timeZone: timeZone)
            return slot > now ? slot : now.addingTimeInterval(catchUp.seconds)
        }
    }

    /// The first weekly slot strictly after `date` (a slot that does not exist
    /// on a daylight-saving day moves to the next valid time).
    func nextSlot(after date: Date, timeZone: TimeZone) -> Date {
        guard case .weekly(let weekday, let hour, let minute) = self else { return date }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let wanted = DateComponents(hour: hour, minute: minute, second: 0, weekday: weekday)
        if let next = calendar.nextDate(after: date, matching: wanted, matchingPolicy: .nextTime, repeatedTimePolicy: .first, direction: .forward) {
            return next
        }
        return date.addingTimeInterval(7 * 86400)
    }
}
