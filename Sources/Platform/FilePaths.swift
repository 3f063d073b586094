import Foundation

/// Paths as the filesystem resolves them, for comparing two spellings of
/// one file (`guardian-demo/guardian.yml` and `/srv/x/guardian-demo/guardian.yml`).
public enum FilePaths {
    /// `path` made absolute against the current directory, with `.` and
    /// `..` resolved textually.
    public static func absolute(_ path: String) -> String {
        normalize(path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path)
    }

    /// `.`, `..` and repeated slashes resolved textually, as from `/`.
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for p in path.split(separator: "/") {
            if p == "." { continue }
            if p == ".." { _ = parts.popLast(); continue }
            parts.append(p)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The absolute path with every symlink resolved (`realpath`), or the
    /// textual absolute path when the file does not exist.
    public static func canonical(_ path: String) -> String {
        let abs = absolute(path)
        guard let real = realpath(abs, nil) else { return abs }
        defer { free(real) }
        return String(cString: real)
    }
}
