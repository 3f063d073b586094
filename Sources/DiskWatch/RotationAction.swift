import Foundation
import Platform
import Synchronization

/// Why a log is being rotated.
enum RotationTrigger: String, Sendable {
    /// Its own criteria (size, hourly/daily/weekly/monthly, maxsize, minsize).
    case schedule
    /// `guardian rotate --force`: rotate regardless of the criteria (logrotate -f).
    case force
    /// The disk guardian needs the space.
    case pressure
}

/// One thing a rotation pass did or, in a dry run, would do; what
/// `guardian rotate` prints.
public struct RotationAction: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case rotate, create, truncate, compress, delete, postrotate, prerotate, firstaction, lastaction, postpone, skip, refuse, fail
        /// `copy`: copied, the log left as it was.
        case copy
    }

    public var kind: Kind
    public var path: String
    public var detail: String
    public var dryRun: Bool

    public var description: String {
        let verb: String
        switch kind {
        case .rotate: verb = dryRun ? "would rotate" : "rotated"
        case .create: verb = dryRun ? "would create" : "created"
        case .truncate: verb = dryRun ? "would copy and truncate" : "copied and truncated"
        case .copy: verb = dryRun ? "would copy" : "copied"
        case .compress: verb = dryRun ? "would compress" : "compressed"
        case .delete: verb = dryRun ? "would delete" : "deleted"
        case .postrotate, .prerotate, .firstaction, .lastaction: verb = dryRun ? "would run \(kind.rawValue)" : "ran \(kind.rawValue)"
        case .postpone: verb = "postponed"
        case .skip: verb = "skipped"
        case .refuse: verb = "refused"
        case .fail: verb = "FAILED"
        }
        return detail.isEmpty ? "\(verb) \(path)" : "\(verb) \(path) \(detail)"
    }
}

/// Set once guardian is stopping: passes end after the current step and a
/// running gzip or postrotate child is killed (its output discarded, the
/// input kept).
final class StopSignal: Sendable {
    private let flag = Mutex(false)
    let child = ChildHandle()

    var isStopped: Bool { flag.withLock { $0 } }

    func stop() {
        flag.withLock { $0 = true }
        child.kill()
    }
}
