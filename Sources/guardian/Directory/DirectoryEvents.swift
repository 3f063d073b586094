import Platform

/// Events of directory entries (listed in `everyKind`).
extension GuardianEvent {
    static let directoryDatabaseAdded = GuardianEvent(
        name: "directoryDatabaseAdded", id: "f8c9248518b74308b319edb909c1154a", message: "a database found in a watched directory is replicated")
    static let directoryDatabaseRemoved = GuardianEvent(
        name: "directoryDatabaseRemoved", id: "651d8eee860e434282a6b17478f806c7", message: "a database left a watched directory; its replication stopped")
    static let directoryFileSkipped = GuardianEvent(
        name: "directoryFileSkipped", id: "65cc30632dc84752b687ab1373fba1bb", message: "a file matching a directory entry's pattern is not replicated")
    static let directoryWatchFailed = GuardianEvent(
        name: "directoryWatchFailed", id: "3f4a3f543d22490d9eb814cfaef6a9a9", message: "a directory entry's directory cannot be read or watched")

    static let directoryEvents: [GuardianEvent] = [.directoryDatabaseAdded, .directoryDatabaseRemoved, .directoryFileSkipped, .directoryWatchFailed]
}
