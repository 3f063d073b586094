import CCRC64

// CRC-64/GO-ISO, the checksum of LTX files (Go's `hash/crc64` with the ISO
// table): polynomial x^64 + x^4 + x^3 + x + 1 (0x1B), reflected form
// 0xD800000000000000, initial value and final xor all ones, input and
// output reflected. Check value: "123456789" → 0xB90956C775A41001.
//
// Restore hashes every decompressed page and a full image every page read,
// so this is on the hot path of a 1 GB restore or first sync. On x86-64 with
// PCLMULQDQ (every x86-64 CPU since 2010) the bulk of each buffer is folded
// with carry-less multiplication (CCRC64/shim.h, ~6 GB/s here, three times
// the tables); the ends, and CPUs without it, use slicing-by-16: sixteen
// 256-entry tables, where table k maps a byte to its CRC contribution when
// followed by k zero bytes, so each step folds 16 input bytes with 16 table
// lookups and no data-dependent branch. Bytes that do not fill a 16-byte step
// use table 0, one at a time.

/// An incremental CRC-64/GO-ISO.
public struct CRC64: Sendable, Equatable {
    /// The running register (inverted, as kept between updates).
    private var register: UInt64 = ~0

    public init() {}

    /// The checksum of everything passed to `update` so far.
    public var value: UInt64 { ~register }

    /// The checksum of `bytes` in one call.
    public static func checksum(_ bytes: [UInt8]) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        register = CRC64Tables.shared.fold(register, base, data.count)
    }
}

/// The lookup tables and folding constants, built once and never changed afterwards.
final class CRC64Tables: @unchecked Sendable {
    static let shared = CRC64Tables()
    static let polynomial: UInt64 = 0xD800_0000_0000_0000

    /// 16 × 256 entries; table k starts at k × 256.
    private let table: UnsafeMutablePointer<UInt64>
    /// The carry-less folding constants (shim.h), nil without PCLMULQDQ.
    private let constants: UnsafeMutablePointer<UInt64>?

    private init() {
        table = .allocate(capacity: 16 * 256)
        for i in 0..<256 {
            var c = UInt64(i)
            for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ Self.polynomial : c >> 1 }
            table[i] = c
        }
        for k in 1..<16 {
            for i in 0..<256 {
                let previous = table[(k - 1) * 256 + i]
                table[k * 256 + i] = (previous >> 8) ^ table[Int(previous & 0xff)]
            }
        }
        if crc64_iso_clmul_available() != 0 {
            let k = UnsafeMutablePointer<UInt64>.allocate(capacity: 8)
            for (i, d) in [512, 384, 256, 128].enumerated() {
                k[2 * i] = Self.xPowerModP(d + 63).bitReversed
                k[2 * i + 1] = Self.xPowerModP(d - 1).bitReversed
            }
            constants = k
        } else {
            constants = nil
        }
    }

    deinit {
        table.deallocate()
        constants?.deallocate()
    }

    /// x^n mod P, in the normal (not reflected) bit order: bit i is the coefficient of x^i.
    static func xPowerModP(_ n: Int) -> UInt64 {
        var r: UInt64 = 1
        for _ in 0..<n { r = r >> 63 == 1 ? (r << 1) ^ 0x1B : r << 1 }
        return r
    }

    /// Whether `fold` uses carry-less multiplication on this CPU.
    var usesCarrylessMultiplication: Bool { constants != nil }

    @inline(__always)
    func fold(_ start: UInt64, _ base: UnsafeRawPointer, _ count: Int) -> UInt64 {
        guard let k = constants, count >= 64 else { return foldTables(start, base, count) }
        let bulk = count & ~63
        var block: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &block) { out in
            crc64_iso_clmul_fold(start, base, bulk, k, out.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        let crc = withUnsafeBytes(of: &block) { foldTables(0, $0.baseAddress.unsafelyUnwrapped, 16) }
        return bulk == count ? crc : foldTables(crc, base + bulk, count - bulk)
    }

    /// The table algorithm alone (the reference; also the ends of `fold`).
    func foldTables(_ start: UInt64, _ base: UnsafeRawPointer, _ count: Int) -> UInt64 {
        var crc = start
        var p = base
        var n = count
        let t = table
        while n >= 16 {
            let a = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) ^ crc
            let b = UInt64(littleEndian: (p + 8).loadUnaligned(as: UInt64.self))
            let x0 = t[15 * 256 + Int(a & 0xff)] ^ t[14 * 256 + Int((a >> 8) & 0xff)]
                ^ t[13 * 256 + Int((a >> 16) & 0xff)] ^ t[12 * 256 + Int((a >> 24) & 0xff)]
            let x1 = t[11 * 256 + Int((a >> 32) & 0xff)] ^ t[10 * 256 + Int((a >> 40) & 0xff)]
                ^ t[9 * 256 + Int((a >> 48) & 0xff)] ^ t[8 * 256 + Int(a >> 56)]
            let x2 = t[7 * 256 + Int(b & 0xff)] ^ t[6 * 256 + Int((b >> 8) & 0xff)]
                ^ t[5 * 256 + Int((b >> 16) & 0xff)] ^ t[4 * 256 + Int((b >> 24) & 0xff)]
            let x3 = t[3 * 256 + Int((b >> 32) & 0xff)] ^ t[2 * 256 + Int((b >> 40) & 0xff)]
                ^ t[1 * 256 + Int((b >> 48) & 0xff)] ^ t[Int(b >> 56)]
            crc = x0 ^ x1 ^ x2 ^ x3
            p += 16
            n &-= 16
        }
        while n > 0 {
            crc = t[Int((crc ^ UInt64(p.load(as: UInt8.self))) & 0xff)] ^ (crc >> 8)
            p += 1
            n &-= 1
        }
        return crc
    }
}

extension UInt64 {
    /// The bits in reverse order (bit 0 becomes bit 63).
    fileprivate var bitReversed: UInt64 {
        var v = self
        var r: UInt64 = 0
        for _ in 0..<64 {
            r = (r << 1) | (v & 1)
            v >>= 1
        }
        return r
    }
}
