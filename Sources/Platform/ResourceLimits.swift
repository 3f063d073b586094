import Foundation

/// Process limits guardian raises for itself at start-up.
public enum ResourceLimits {
    /// Raises the soft limit on open files to the hard limit. Each database
    /// takes about a dozen descriptors (SQLite's connections, the WAL and
    /// database files guardian reads, inotify), and systemd starts services
    /// with a soft limit of 1,024 (its hard limit is far higher: programs
    /// that need more are expected to raise it themselves, as guardian does;
    /// guardian waits with poll(2), never select(2)). Returns the (soft,
    /// hard) limits now in force.
    @discardableResult
    public static func raiseOpenFiles() -> (soft: UInt64, hard: UInt64) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }
}
