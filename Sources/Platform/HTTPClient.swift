import CCurl
import Foundation
import Synchronization

/// One HTTP header, as sent or received.
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A request for `HTTPClient`. Everything has a safe default: TLS is
/// verified, only http/https are allowed, a stalled transfer is aborted.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case bytes([UInt8])
        /// `length` bytes of a local file starting at `offset` (streamed, never loaded whole).
        case file(path: String, offset: Int64, length: Int64)
    }

    public enum ResponseDestination: Sendable {
        /// Collect the body in memory; a longer body fails the request.
        case memory(limit: Int)
        /// Stream a 2xx body into this file (created or truncated). Error
        /// bodies (non-2xx) are still collected in memory.
        case file(path: String)
    }

    /// AWS Signature Version 4, computed by libcurl (`CURLOPT_AWS_SIGV4`).
    /// Note: libcurl puts the query string into the canonical request as it
    /// is, so callers must build it already canonical (sorted, RFC 3986).
    public struct AWSSigV4: Sendable {
        /// e.g. `aws:amz:us-east-1:s3`
        public var provider: String
        public var accessKeyID: String
        public var secretAccessKey: Secret

        public init(provider: String, accessKeyID: String, secretAccessKey: Secret) {
            self.provider = provider
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
        }
    }

    public var method: String
    public var url: String
    public var headers: [HTTPHeader]
    public var body: Body
    public var response: ResponseDestination
    public var connectTimeout: Duration
    /// Upper bound for the whole exchange; nil = none (large transfers rely on `stallTimeout`).
    public var timeout: Duration?
    /// Abort when fewer than one byte moved in this long (a hung peer).
    public var stallTimeout: Duration
    public var verifyTLS: Bool
    public var sigV4: AWSSigV4?

    public init(
        method: String, url: String, headers: [HTTPHeader] = [], body: Body = .none,
        response: ResponseDestination = .memory(limit: 16 << 20), connectTimeout: Duration = .seconds(10),
        timeout: Duration? = nil, stallTimeout: Duration = .seconds(30), verifyTLS: Bool = true, sigV4: AWSSigV4? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.response = response
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.stallTimeout = stallTimeout
        self.verifyTLS = verifyTLS
        self.sigV4 = sigV4
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names as received; `header(_:)` matches case-insensitively.
    public var headers: [HTTPHeader]
    /// The body (empty when it was streamed to a file).
    public var body: [UInt8]
    /// Bytes of body received (also when streamed to a file).
    public var bodySize: Int64

    public func header(_ name: String) -> String? {
        headers.last { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var isSuccess: Bool { (200..<300).contains(status) }
}

/// A transfer that failed below HTTP (no status): connect, DNS, TLS, timeout.
/// Its text never contains credentials (curl's messages name host and port only).
public struct HTTPError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case connect, timeout, tls, transfer, cancelled, tooLarge, local }
    public let kind: Kind
    public let curlCode: Int
    public let message: String

    public init(kind: Kind, curlCode: Int, message: String) {
        self.kind = kind
        self.curlCode = curlCode
        self.message = message
    }

    public var description: String { message }

    /// Worth retrying: the peer may be back in a moment.
    public var isTransient: Bool {
        switch kind {
        case .connect, .timeout, .transfer: true
        case .tls, .cancelled, .tooLarge, .local: false
        }
    }
}

/// A blocking-free HTTP client on libcurl easy handles. Every transfer runs
/// on the client's own `BlockingPool` (never on the cooperative pool);
/// finished handles are kept for reuse so keep-alive connections, DNS and TLS
/// sessions survive between requests. Task cancellation aborts a transfer.
public final class HTTPClient: Sendable {
    /// Shared by S3 replicas and webhook alerts. A dedicated pool, so that
    /// slow networks never hold up file I/O on `BlockingPool.shared`.
    public static let shared = HTTPClient()

    private static let globalInit: Bool = {
        _ = Crypto.disableExitCleanup
        return curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()

    private let pool: BlockingPool
    private let idle = Mutex<[HandleBox]>([])
    private let counter = Atomic<Int>(0)

    public init(pool: BlockingPool = BlockingPool(name: "guardian-http", threads: 2)) {
        self.pool = pool
        _ = Self.globalInit
    }

    /// Requests sent so far (each attempt counts; for cost figures in benchmarks).
    public var requestCount: Int { counter.load(ordering: .relaxed) }

    public func perform(_ request: HTTPRequest) async throws -> HTTPResponse {
        let cancel = CancelFlag()
        counter.add(1, ordering: .relaxed)
        return try await withTaskCancellationHandler {
            try await pool.run { [self] in
                let box = takeHandle()
                guard let box else {
                    throw HTTPError(kind: .local, curlCode: -1, message: "curl_easy_init failed")
                }
                defer { returnHandle(box) }
                return try Self.transfer(box.handle, request, cancel: cancel)
            }
        } onCancel: {
            cancel.value.store(true, ordering: .relaxed)
        }
    }

    // MARK: - Handles

    private func takeHandle() -> HandleBox? {
        if let box = idle.withLock({ $0.popLast() }) {
            curl_easy_reset(box.handle)
            return box
        }
        guard let h = curl_easy_init() else { return nil }
        return HandleBox(handle: h)
    }

    private func returnHandle(_ box: HandleBox) {
        let kept = idle.withLock { list -> Bool in
            guard list.count < 8 else { return false }
            list.append(box)
            return true
        }
        if !kept { curl_easy_cleanup(box.handle) }
    }

    // MARK: - One transfer (runs on a pool thread)

    private static func transfer(_ h: UnsafeMutableRawPointer, _ request: HTTPRequest, cancel: CancelFlag) throws -> HTTPResponse {
        let ctx = TransferContext(cancel: cancel, stallLimit: Double(milliseconds(request.stallTimeout)) / 1000)
        switch request.response {
        case .memory(let limit): ctx.limit = limit
        case .file(let path):
            ctx.limit = 1 << 20
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw SystemError("open", path: path) }
            ctx.outputFD = fd
            ctx.outputPath = path
        }
        defer { if ctx.outputFD >= 0 { close(ctx.outputFD) } }

        var bodySize: Int64 = -1
        switch request.body {
        case .none: break
        case .bytes(let bytes):
            ctx.uploadBytes = bytes
            bodySize = Int64(bytes.count)
        case .file(let path, let offset, let length):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open", path: path) }
            ctx.inputFD = fd
            ctx.inputPath = path
            ctx.inputStart = offset
            ctx.inputLength = length
            bodySize = length
        }
        defer { if ctx.inputFD >= 0 { close(ctx.inputFD) } }

        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        // Note: no "Expect:" override. libcurl signs every header the caller
        // sets, including an emptied one it then leaves out of the request,
        // which breaks SigV4; S3 answers 100-continue promptly anyway.
        for header in request.headers {
            let line = header.value.isEmpty ? "\(header.name):" : "\(header.name): \(header.value)"
            headerList = curl_slist_append(headerList, line)
        }

        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let unmanaged = Unmanaged.passRetained(ctx)
        defer { unmanaged.release() }
        let ud = unmanaged.toOpaque()

        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errbuf in
            var rc = CURLE_OK
            func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
            set(ccurl_setopt_string(h, CURLOPT_URL, request.url))
            set(ccurl_setopt_string(h, CURLOPT_PROTOCOLS_STR, "http,https"))
            set(ccurl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
            set(ccurl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1))
            set(ccurl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0))
            set(ccurl_setopt_errorbuffer(h, errbuf.baseAddress))
            set(ccurl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, request.verifyTLS ? 1 : 0))
            set(ccurl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, request.verifyTLS ? 2 : 0))
            set(ccurl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(request.connectTimeout)))
            set(ccurl_setopt_long(h, CURLOPT_TIMEOUT_MS, request.timeout.map(milliseconds) ?? 0))
            // Stalls are detected in the progress callback (libcurl's own
            // low-speed check averages over several seconds and reacts late).
            set(ccurl_setopt_slist(h, CURLOPT_HTTPHEADER, headerList))

            set(ccurl_setopt_write(h, writeCallback))
            set(ccurl_setopt_pointer(h, CURLOPT_WRITEDATA, ud))
            set(ccurl_setopt_header(h, headerCallback))
            set(ccurl_setopt_pointer(h, CURLOPT_HEADERDATA, ud))
            set(ccurl_setopt_long(h, CURLOPT_NOPROGRESS, 0))
            set(ccurl_setopt_xferinfo(h, progressCallback))
            set(ccurl_setopt_pointer(h, CURLOPT_XFERINFODATA, ud))

            let method = request.method.uppercased()
            if bodySize >= 0 {
                set(ccurl_setopt_read(h, readCallback))
                set(ccurl_setopt_pointer(h, CURLOPT_READDATA, ud))
                set(ccurl_setopt_seek(h, seekCallback))
                set(ccurl_setopt_pointer(h, CURLOPT_SEEKDATA, ud))
                if method == "POST" {
                    set(ccurl_setopt_long(h, CURLOPT_POST, 1))
                    set(ccurl_setopt_offset(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bodySize)))
                } else {
                    set(ccurl_setopt_long(h, CURLOPT_UPLOAD, 1))
                    set(ccurl_setopt_offset(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(bodySize)))
                    if method != "PUT" { set(ccurl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)) }
                }
            } else {
                switch method {
                case "GET": set(ccurl_setopt_long(h, CURLOPT_HTTPGET, 1))
                case "HEAD": set(ccurl_setopt_long(h, CURLOPT_NOBODY, 1))
                default: set(ccurl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method))
                }
            }
            if let sig = request.sigV4 {
                set(ccurl_setopt_string(h, CURLOPT_AWS_SIGV4, sig.provider))
                set(ccurl_setopt_string(h, CURLOPT_USERNAME, sig.accessKeyID))
                set(ccurl_setopt_string(h, CURLOPT_PASSWORD, sig.secretAccessKey.value))
            }
            guard rc == CURLE_OK else { return rc }
            return curl_easy_perform(h)
        }
        // Never leave the secret in a handle that sits in the idle cache.
        if request.sigV4 != nil {
            _ = ccurl_setopt_string(h, CURLOPT_PASSWORD, "")
        }

        if let fileError = ctx.fileError { throw fileError }
        guard code == CURLE_OK else {
            let detail = errorBuffer.withUnsafeBufferPointer { b in
                String(decoding: b.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            throw makeError(code, detail: detail, ctx: ctx, request: request)
        }
        var status = 0
        _ = ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: ctx.headers, body: ctx.body, bodySize: ctx.received)
    }

    private static func makeError(_ code: CURLcode, detail: String, ctx: TransferContext, request: HTTPRequest) -> HTTPError {
        let text = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let where_ = "\(request.method) \(redactedURL(request.url))"
        if ctx.cancel.value.load(ordering: .relaxed) {
            return HTTPError(kind: .cancelled, curlCode: Int(code.rawValue), message: "\(where_): cancelled")
        }
        if ctx.stalled {
            return HTTPError(kind: .timeout, curlCode: Int(code.rawValue), message: "\(where_): no data moved for \(ctx.stallLimit) s (peer hung or network cut)")
        }
        if ctx.tooLarge {
            return HTTPError(kind: .tooLarge, curlCode: Int(code.rawValue), message: "\(where_): response body larger than \(ctx.limit) bytes")
        }
        let kind: HTTPError.Kind
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: kind = .connect
        case CURLE_OPERATION_TIMEDOUT: kind = .timeout
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS:
            kind = .tls
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_BAD_FUNCTION_ARGUMENT, CURLE_OUT_OF_MEMORY,
             CURLE_NOT_BUILT_IN, CURLE_UNKNOWN_OPTION, CURLE_READ_ERROR, CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK:
            kind = .local
        default: kind = .transfer  // send/recv errors, got nothing, partial file, SSL connect resets, ...
        }
        return HTTPError(kind: kind, curlCode: Int(code.rawValue), message: "\(where_): \(text)")
    }

    /// The URL without any `user:password@` part, for messages.
    public static func redactedURL(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + String(rest[rest.index(after: at)...])
    }

    private static func milliseconds(_ d: Duration) -> Int {
        let (s, atto) = d.components
        return Int(s) * 1000 + Int(atto / 1_000_000_000_000_000)
    }
}

/// A curl easy handle owned by one transfer at a time.
private final class HandleBox: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    init(handle: UnsafeMutableRawPointer) { self.handle = handle }
}

private final class CancelFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// State shared with libcurl's C callbacks during one transfer. Only the
/// transfer's thread touches it.
private final class TransferContext {
    let cancel: CancelFlag
    var limit = 0
    var body: [UInt8] = []
    var received: Int64 = 0
    var tooLarge = false
    var headers: [HTTPHeader] = []
    var status = 0
    var outputFD: Int32 = -1
    var outputPath = ""
    var fileError: SystemError?

    var uploadBytes: [UInt8] = []
    var uploadOffset = 0
    var inputFD: Int32 = -1
    var inputPath = ""
    var inputStart: Int64 = 0
    var inputLength: Int64 = 0
    var inputSent: Int64 = 0

    let stallLimit: Double
    var stalled = false
    private var lastMoved: Int64 = -1
    private var lastMovedAt = ContinuousClock.now

    init(cancel: CancelFlag, stallLimit: Double) {
        self.cancel = cancel
        self.stallLimit = stallLimit
    }

    /// Called by libcurl at least once a second: false aborts the transfer.
    func progress(moved: Int64) -> Bool {
        if cancel.value.load(ordering: .relaxed) { return false }
        let now = ContinuousClock.now
        if moved != lastMoved {
            lastMoved = moved
            lastMovedAt = now
            return true
        }
        if now - lastMovedAt > .milliseconds(Int64(stallLimit * 1000)) {
            stalled = true
            return false
        }
        return true
    }

    func receive(_ data: UnsafeRawBufferPointer) -> Int {
        if outputFD >= 0, (200..<300).contains(status) {
            var offset = 0
            while offset < data.count {
                let n = write(outputFD, data.baseAddress.map { $0 + offset }, data.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    fileError = SystemError("write", path: outputPath)
                    return 0
                }
                offset += n
            }
            received += Int64(data.count)
            return data.count
        }
        if body.count + data.count > limit {
            tooLarge = true
            return 0
        }
        body.append(contentsOf: data)
        received += Int64(data.count)
        return data.count
    }

    func header(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("HTTP/") {
            // A new response (after 100 Continue or a retried connection): start over.
            headers.removeAll()
            let parts = trimmed.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            return
        }
        guard let colon = trimmed.firstIndex(of: ":") else { return }
        let name = String(trimmed[..<colon]).trimmingCharacters(in: .whitespaces)
        let value = String(trimmed[trimmed.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        headers.append(HTTPHeader(name, value))
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if inputFD >= 0 {
            let want = Int(min(Int64(buffer.count), inputLength - inputSent))
            if want <= 0 { return 0 }
            while true {
                let n = pread(inputFD, buffer.baseAddress, want, off_t(inputStart + inputSent))
                if n < 0 {
                    if errno == EINTR { continue }
                    fileError = SystemError("read", path: inputPath)
                    return CURL_READFUNC_ABORT
                }
                if n == 0 {
                    // The file shrank under us: the declared length can no longer be sent.
                    fileError = SystemError("read", path: inputPath, code: EIO)
                    return CURL_READFUNC_ABORT
                }
                inputSent += Int64(n)
                return n
            }
        }
        let n = min(buffer.count, uploadBytes.count - uploadOffset)
        if n <= 0 { return 0 }
        uploadBytes.withUnsafeBytes { src in
            guard let base = src.baseAddress else { return }
            buffer.baseAddress?.copyMemory(from: base + uploadOffset, byteCount: n)
        }
        uploadOffset += n
        return n
    }

    func seek(to offset: Int64) -> Bool {
        if inputFD >= 0 {
            guard offset >= 0, offset <= inputLength else { return false }
            inputSent = offset
            return true
        }
        guard offset >= 0, offset <= Int64(uploadBytes.count) else { return false }
        uploadOffset = Int(offset)
        return true
    }
}

private let CURL_READFUNC_ABORT = 0x1000_0000

private func context(_ ud: UnsafeMutableRawPointer?) -> TransferContext? {
    guard let ud else { return nil }
    return Unmanaged<TransferContext>.fromOpaque(ud).takeUnretainedValue()
}

private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { ptr, size, count, ud in
    guard let ctx = context(ud), let ptr else { return 0 }
    return ctx.receive(UnsafeRawBufferPointer(start: ptr, count: size * count))
}

private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { ptr, size, count, ud in
    guard let ctx = context(ud), let ptr else { return 0 }
    let n = size * count
    ctx.header(String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self))
    return n
}

private let readCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { ptr, size, count, ud in
    guard let ctx = context(ud), let ptr else { return CURL_READFUNC_ABORT }
    return ctx.read(into: UnsafeMutableRawBufferPointer(start: ptr, count: size * count))
}

private let seekCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, Int32) -> Int32 = { ud, offset, origin in
    guard let ctx = context(ud), origin == SEEK_SET else { return 2 }  // CURL_SEEKFUNC_CANTSEEK
    return ctx.seek(to: Int64(offset)) ? 0 : 1  // CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL
}

private let progressCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = { ud, _, downloaded, _, uploaded in
    guard let ctx = context(ud) else { return 1 }
    return ctx.progress(moved: Int64(downloaded) + Int64(uploaded)) ? 0 : 1
}
