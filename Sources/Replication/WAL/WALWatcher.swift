import Foundation
import Platform

/// Wakes the replicator within milliseconds of a write to the `-wal` file:
/// inotify on the database's directory (the WAL may not exist yet, and may be
/// replaced), filtered to the WAL's name. The watch lives on the database's
/// `ReplicationWorker` (one inotify descriptor per worker, shared by all its
/// databases): the event is handled on the thread that runs the replicator,
/// with no thread of its own. Events are coalesced into a single pending
/// wake-up. When inotify is unavailable (or the directory goes away) the
/// watcher simply never wakes the loop again, `isActive` turns false, and the
/// replicator's poll interval takes over.
final class WALWatcher: @unchecked Sendable {
    private let continuation: AsyncStream<Void>.Continuation
    private let worker: ReplicationWorker
    private let lock = NSLock()
    private var watches: [ReplicationWorker.Watch] = []
    private var lost = false
    /// A change was reported and not taken yet (true at first: whatever
    /// happened before the watch began has not been looked at).
    private var pending = true

    /// Each change yields `wake` right on the worker's thread (the loop that
    /// consumes it runs there too: no other thread is involved). The
    /// database file's own name is watched too, so a file renamed over it
    /// is noticed at once.
    init(walPath: String, worker: ReplicationWorker, wake: AsyncStream<Void>.Continuation) {
        self.worker = worker
        continuation = wake
        let dir = (walPath as NSString).deletingLastPathComponent
        let name = (walPath as NSString).lastPathComponent
        var found: [ReplicationWorker.Watch] = []
        for watched in [name, String(name.dropLast(4))] {
            let w = worker.watch(directory: dir.isEmpty ? "." : dir, name: watched) { [weak self, continuation] gone in
                guard let self else { return }
                self.changed(lost: gone)
                if !gone, let pass = self.lock.withLock({ self.pass }), pass() { return }
                continuation.yield(())
            }
            if let w { found.append(w) }
        }
        lock.withLock {
            watches = found
            lost = found.count < 2
        }
    }

    /// Handles a change right on the worker's thread; false: wake the loop.
    private var pass: (@Sendable () -> Bool)?

    /// From now on a change is first offered to `pass` (on the worker's
    /// thread): the loop is woken only when it returns false.
    func handleChanges(_ pass: @escaping @Sendable () -> Bool) {
        lock.withLock { self.pass = pass }
    }

    private func changed(lost gone: Bool) {
        lock.withLock {
            pending = true
            if gone {
                lost = true
                watches = []
            }
        }
    }

    /// True while inotify reports this WAL's changes.
    var isActive: Bool { lock.withLock { !lost } }

    /// True while inotify watches and no change waits to be taken.
    var isQuiet: Bool { lock.withLock { !lost && !pending && !muted } }

    /// Whether a change was reported since the last call (always true while
    /// inotify does not watch the file, or its modifications are not
    /// reported: then every wake-up has to look).
    func takeChange() -> Bool {
        lock.withLock {
            defer { pending = false }
            return pending || lost || muted
        }
    }

    /// The directory's modify events are stopped for a burst (`mute`).
    private var muted = false
    var isMuted: Bool { lock.withLock { muted } }

    /// Stops the modify events while the loop reads a burst by passes back
    /// to back (it wakes itself meanwhile); false, changing nothing, when
    /// the directory has other databases' watchers.
    func mute() -> Bool {
        let ws = lock.withLock { lost ? [] : watches }
        guard !ws.isEmpty, worker.setModifyEvents(false, for: ws) else { return false }
        lock.withLock { muted = true }
        return true
    }

    /// Resumes the modify events. The caller then looks once more: what was
    /// written before they resumed made none.
    func unmute() {
        let ws = lock.withLock { () -> [ReplicationWorker.Watch] in
            defer { muted = false }
            return muted ? watches : []
        }
        if !ws.isEmpty { _ = worker.setModifyEvents(true, for: ws) }
    }

    /// Puts back a change taken by a pass that could not finish it.
    func restoreChange() {
        lock.withLock { pending = true }
    }

    /// Drops the watch.
    func stop() {
        let ws = lock.withLock { () -> [ReplicationWorker.Watch] in
            defer { watches = []; lost = true; pass = nil; muted = false }
            return watches
        }
        for w in ws { worker.unwatch(w) }
    }
}
