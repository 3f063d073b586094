import CLinux
import Glibc

/// The filesystem credentials of the calling thread alone: what logrotate's
/// `su USER GROUP` needs (files created are the user's, every permission
/// check is the user's) without changing the credentials of guardian's
/// whole process, whose other threads keep replicating as before.
///
/// Linux keeps credentials per thread; glibc's setuid/setgid/setgroups
/// wrappers change them in every thread of the process, so the raw system
/// calls are used (`setfsuid`, `setfsgid`, `setgroups`). A filesystem uid
/// other than 0 also drops the thread's filesystem capabilities
/// (CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER, ...), as `seteuid` would.
/// A child started meanwhile gets back the process's effective uid at exec
/// (the supplementary groups stay): run children outside `with`, or drop
/// their privileges explicitly.
public struct ThreadCredentials: Sendable, Equatable, CustomStringConvertible {
    public var uid: uid_t
    public var gid: gid_t

    public init(uid: uid_t, gid: gid_t) {
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "uid \(uid) gid \(gid)" }

    /// The calling thread's filesystem uid and gid.
    public static var current: ThreadCredentials {
        ThreadCredentials(
            uid: uid_t(truncatingIfNeeded: guardian_thread_setfsuid(uid_t.max)),
            gid: gid_t(truncatingIfNeeded: guardian_thread_setfsgid(gid_t.max)))
    }

    /// Runs `body` on this thread with the filesystem uid and gid of
    /// `credentials` and `gid` as the only supplementary group; the
    /// thread's own are restored before returning (whatever `body` does).
    /// Throws (and runs nothing) when the thread may not switch (EPERM:
    /// guardian runs without CAP_SETUID/CAP_SETGID).
    public static func with<T>(_ credentials: ThreadCredentials, _ body: () throws -> T) throws -> T {
        let saved = current
        let count = getgroups(0, nil)
        guard count >= 0 else { throw SystemError("getgroups", path: "") }
        var groups = [gid_t](repeating: 0, count: Int(count))
        let got = groups.withUnsafeMutableBufferPointer { getgroups(count, $0.baseAddress) }
        guard got >= 0 else { throw SystemError("getgroups", path: "") }
        groups = Array(groups.prefix(Int(got)))

        var only = [credentials.gid]
        guard guardian_thread_setgroups(1, &only) == 0 else {
            throw SystemError("setgroups \(credentials.gid)", path: "")
        }
        _ = guardian_thread_setfsgid(credentials.gid)
        _ = guardian_thread_setfsuid(credentials.uid)
        defer {
            _ = guardian_thread_setfsuid(saved.uid)
            _ = guardian_thread_setfsgid(saved.gid)
            let restored = groups.withUnsafeBufferPointer { guardian_thread_setgroups($0.count, $0.baseAddress) }
            // Went one way, so it goes back (the capabilities to switch
            // are not filesystem capabilities); anything else would leave
            // this thread working with another user's rights.
            if restored != 0 || current != saved {
                fatalError("could not restore this thread's credentials (\(saved)) after switching to \(credentials)")
            }
        }
        guard current == credentials else {
            throw SystemError("switch filesystem credentials to \(credentials)", path: "", code: EPERM)
        }
        return try body()
    }
}
