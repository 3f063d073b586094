import Foundation

/// Writes every page of a full image (1...commit, never the lock page)
/// through an `LTXEncoder`, with LZ4 on helper threads: the caller's thread
/// reads a batch of consecutive pages (512 KiB) while the helpers compress
/// the batches before it, then writes the compressed frames in page order
/// (hashing each page: CRC64.swift, ~12 GB/s). Memory: `2 × workers + 1`
/// batches in flight (about 1 MiB each), whatever the database size.
/// Before it, LZ4 and the CRC ran on the replicator's thread alone.
final class LTXImageWriter {
    /// Bytes of pages per batch.
    static let batchBytes = 512 << 10

    /// Helpers: both cores of a 2-core machine, at most four.
    static var defaultWorkers: Int { max(1, min(4, ProcessInfo.processInfo.activeProcessorCount)) }

    /// Writes pages 1...commit (skipping the lock page) to `encoder`. `read`
    /// fills `count × pageSize` bytes at its pointer with pages `first`,
    /// `first + 1`, ... (never spanning the lock page); it runs on the
    /// caller's thread, as does every call to `encoder`.
    static func write(
        encoder: LTXEncoder, workers: Int = defaultWorkers,
        read: (_ first: UInt32, _ count: Int, _ into: UnsafeMutableRawPointer) throws -> Void
    ) throws {
        let header = encoder.header
        let pageSize = Int(header.pageSize)
        let lock = header.lockPgno
        let perBatch = max(1, batchBytes / pageSize)
        let pool = CompressionPool(workers: max(1, workers))
        defer { pool.stop() }
        var free = (0..<(2 * max(1, workers) + 1)).map { _ in Batch(pages: perBatch, pageSize: pageSize) }
        var inFlight: [Batch] = []

        func emit(_ batch: Batch) throws {
            pool.wait(for: batch)
            for i in 0..<batch.count {
                let pgno = batch.first + UInt32(i)
                let page = UnsafeRawBufferPointer(start: batch.pages + i * pageSize, count: pageSize)
                let frame = UnsafeRawBufferPointer(start: batch.frames + i * batch.frameCapacity, count: batch.lengths[i])
                guard batch.lengths[i] > 0 else {
                    throw LTXError(.invalidInput, file: encoder.name, "LZ4 could not compress page \(pgno)")
                }
                try encoder.writeFrame(pgno: pgno, page: page, frame: frame)
            }
        }

        for (first, count) in ranges(commit: header.commit, lock: lock, perBatch: perBatch) {
            let batch: Batch
            if let b = free.popLast() {
                batch = b
            } else {
                let oldest = inFlight.removeFirst()
                try emit(oldest)
                batch = oldest
            }
            batch.first = first
            batch.count = count
            try read(first, count, batch.pages)
            pool.submit(batch)
            inFlight.append(batch)
        }
        for batch in inFlight { try emit(batch) }
    }

    /// The runs of pages 1...commit without the lock page, each at most
    /// `perBatch` long and never spanning the lock page: (first, count).
    static func ranges(commit: UInt32, lock: UInt32, perBatch: Int) -> [(UInt32, Int)] {
        var out: [(UInt32, Int)] = []
        var next: UInt32 = 1
        while commit > 0, next <= commit {
            if next == lock {
                next += 1
                continue
            }
            // Up to the batch size, the commit, or the page before the lock page.
            var last = min(commit, next + UInt32(perBatch) - 1)
            if next < lock, last >= lock { last = lock - 1 }
            out.append((next, Int(last - next) + 1))
            next = last + 1
        }
        return out
    }

    /// Pages in, frames out: one batch's buffers.
    final class Batch: @unchecked Sendable {
        let pages: UnsafeMutableRawPointer
        let frames: UnsafeMutableRawPointer
        let frameCapacity: Int
        let pageSize: Int
        var lengths: [Int]
        var first: UInt32 = 0
        var count = 0
        /// Set by the pool (under its lock) once every page is compressed.
        var done = false

        init(pages: Int, pageSize: Int) {
            self.pageSize = pageSize
            frameCapacity = LTXEncoder.frameCapacity(pageSize: pageSize)
            self.pages = .allocate(byteCount: pages * pageSize, alignment: 16)
            frames = .allocate(byteCount: pages * frameCapacity, alignment: 16)
            lengths = [Int](repeating: 0, count: pages)
        }

        deinit {
            pages.deallocate()
            frames.deallocate()
        }

        /// Compresses every page (on a helper thread).
        func compress() {
            for i in 0..<count {
                lengths[i] = LTXEncoder.encodeFrame(
                    pgno: first + UInt32(i), page: UnsafeRawBufferPointer(start: pages + i * pageSize, count: pageSize),
                    into: frames + i * frameCapacity, capacity: frameCapacity)
            }
        }
    }

    /// Helper threads that compress submitted batches, in any order.
    final class CompressionPool: @unchecked Sendable {
        private let condition = NSCondition()
        private var queue: [Batch] = []
        private var stopping = false
        private var running = 0

        init(workers: Int) {
            running = workers
            for i in 0..<workers {
                let thread = Thread { [self] in loop() }
                thread.name = "guardian-lz4-\(i)"
                thread.start()
            }
        }

        func submit(_ batch: Batch) {
            condition.lock()
            batch.done = false
            queue.append(batch)
            condition.signal()
            condition.unlock()
        }

        func wait(for batch: Batch) {
            condition.lock()
            defer { condition.unlock() }
            while !batch.done { condition.wait() }
        }

        /// Ends the threads (a batch being compressed is finished) and waits for them.
        func stop() {
            condition.lock()
            stopping = true
            queue.removeAll()
            condition.broadcast()
            while running > 0 { condition.wait() }
            condition.unlock()
        }

        private func loop() {
            condition.lock()
            while true {
                while queue.isEmpty && !stopping { condition.wait() }
                if stopping { break }
                let batch = queue.removeFirst()
                condition.unlock()
                batch.compress()
                condition.lock()
                batch.done = true
                condition.broadcast()
            }
            running -= 1
            condition.broadcast()
            condition.unlock()
        }
    }
}
