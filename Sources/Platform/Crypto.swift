import CCrypto
import Foundation

/// Hashes and MACs from OpenSSL's libcrypto: SHA-256 (S3's
/// `x-amz-content-sha256`), MD5 (S3's `Content-MD5` and ETags), HMAC-SHA256
/// (webhook signatures) and HMAC-SHA1 (hashed `known_hosts` entries).
/// All functions are pure CPU work; they never block on I/O except
/// `Digest.file`, which reads a local file and belongs on `BlockingPool`.
public enum Crypto {
    /// Stops OpenSSL from tearing itself down in an `atexit` handler. Without
    /// this, a process that exits while another thread still uses libcrypto
    /// (libcurl, libssh2 closing a session) can crash in OpenSSL's freed
    /// locks. Only effective as the process's first OpenSSL initialisation:
    /// HTTPClient and the SFTP client call it before libcurl/libssh2 start,
    /// and `main` may call it first thing. Idempotent.
    public static let disableExitCleanup: Void = {
        _ = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    }()

    public enum Algorithm: Sendable {
        case sha256, sha1, md5

        var evp: OpaquePointer? {
            switch self {
            case .sha256: EVP_sha256()
            case .sha1: EVP_sha1()
            case .md5: EVP_md5()
            }
        }

        public var size: Int {
            switch self {
            case .sha256: 32
            case .sha1: 20
            case .md5: 16
            }
        }
    }

    public static func sha256(_ bytes: some Collection<UInt8>) -> [UInt8] { digest(.sha256, bytes) }
    public static func sha256Hex(_ bytes: some Collection<UInt8>) -> String { hex(sha256(bytes)) }
    public static func sha256Hex(_ text: String) -> String { hex(sha256(Array(text.utf8))) }
    public static func md5(_ bytes: some Collection<UInt8>) -> [UInt8] { digest(.md5, bytes) }

    /// The hex SHA-256 of the empty string, which S3 wants for bodiless requests.
    public static let emptySHA256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public static func digest(_ algorithm: Algorithm, _ bytes: some Collection<UInt8>) -> [UInt8] {
        var d = Digest(algorithm)
        d.update(bytes)
        return d.finish()
    }

    public static func hmacSHA256(key: some Collection<UInt8>, data: some Collection<UInt8>) -> [UInt8] {
        hmac(.sha256, key: key, data: data)
    }

    public static func hmac(_ algorithm: Algorithm, key: some Collection<UInt8>, data: some Collection<UInt8>) -> [UInt8] {
        let k = Array(key)
        let d = Array(data)
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        let ok = k.withUnsafeBytes { kp in
            d.withUnsafeBytes { dp in
                // HMAC never fails for these digests and in-memory inputs; a
                // nil here would mean libcrypto itself is broken.
                HMAC(algorithm.evp, kp.baseAddress, Int32(kp.count), dp.bindMemory(to: UInt8.self).baseAddress, dp.count, &out, &len) != nil
            }
        }
        return ok ? Array(out[0..<Int(len)]) : []
    }

    /// Lower-case hex.
    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func base64(_ bytes: some Collection<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    /// An incremental digest (one pass over a large file for several hashes).
    public struct Digest: ~Copyable {
        private let ctx: OpaquePointer?
        public let algorithm: Algorithm

        public init(_ algorithm: Algorithm) {
            self.algorithm = algorithm
            ctx = EVP_MD_CTX_new()
            EVP_DigestInit_ex(ctx, algorithm.evp, nil)
        }

        public mutating func update(_ bytes: some Collection<UInt8>) {
            let done: Void? = bytes.withContiguousStorageIfAvailable { buf in
                _ = EVP_DigestUpdate(ctx, buf.baseAddress, buf.count)
            }
            if done == nil {
                let copy = Array(bytes)
                copy.withUnsafeBytes { _ = EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) }
            }
        }

        public mutating func update(_ raw: UnsafeRawBufferPointer) {
            _ = EVP_DigestUpdate(ctx, raw.baseAddress, raw.count)
        }

        public consuming func finish() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 64)
            var len: UInt32 = 0
            EVP_DigestFinal_ex(ctx, &out, &len)
            return Array(out[0..<Int(len)])
        }

        deinit { EVP_MD_CTX_free(ctx) }

        /// SHA-256 and MD5 of a byte range of a local file, in one pass.
        /// Blocking: call it on `BlockingPool`.
        public static func file(
            _ path: String, offset: Int64 = 0, length: Int64? = nil
        ) throws -> (sha256: [UInt8], md5: [UInt8], size: Int64) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open", path: path) }
            defer { close(fd) }
            var sha = Digest(.sha256)
            var md5 = Digest(.md5)
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var position = offset
            var remaining = length ?? Int64.max
            var total: Int64 = 0
            while remaining > 0 {
                let want = Int(min(Int64(buffer.count), remaining))
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("read", path: path)
                }
                if n == 0 { break }
                buffer.withUnsafeBytes { raw in
                    let part = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                    sha.update(part)
                    md5.update(part)
                }
                position += Int64(n)
                remaining -= Int64(n)
                total += Int64(n)
            }
            return (sha.finish(), md5.finish(), total)
        }
    }
}
