import CLinux
import Glibc

/// The POSIX access ACL of a file (what getfacl shows), kept from a log to
/// its archives and to the new log, like logrotate: a log shipper granted
/// `user:shipper:r--` keeps reading, and the group keeps only what it had.
public enum FileACL {
    public static let accessName = "system.posix_acl_access"

    /// Copies the access ACL of `from` onto `to`; nothing when `from` has
    /// none (or the filesystem has no ACLs). Call after fchmod: setting the
    /// ACL also sets the group bits to its mask, as setfacl does, where a
    /// plain chmod with the original's mode would hand the mask to the group.
    @discardableResult
    public static func copy(from: Int32, to: Int32, path: String) -> SystemError? {
        let size = fgetxattr(from, accessName, nil, 0)
        guard size > 0 else { return nil }  // ENODATA, ENOTSUP: no ACL
        var buffer = [UInt8](repeating: 0, count: size)
        let n = buffer.withUnsafeMutableBytes { fgetxattr(from, accessName, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let rc = buffer.withUnsafeBytes { fsetxattr(to, accessName, $0.baseAddress, n, 0) }
        return rc == 0 ? nil : SystemError("set ACL", path: path)
    }
}
