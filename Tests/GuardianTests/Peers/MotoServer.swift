import Foundation
import Platform
import Replication

/// A real moto S3 server (`moto_server` from the test virtualenv) on a free
/// 127.0.0.1 port, started and stopped by the test that owns it (by PID).
/// With `auth: true` moto enforces SigV4 after a few bootstrap calls
/// (INITIAL_NO_AUTH_ACTION_COUNT), which the helper spends on creating an
/// IAM user with a real access key and the bucket (test-peers.md §1).
final class MotoServer: @unchecked Sendable {
    let dir: String
    let port: Int
    let auth: Bool
    /// 127.0.0.1, or the inner address of `namespace`.
    let host: String
    let namespace: NetNamespace?
    private let slot = PeerSlot()
    /// Credentials that work (in auth mode: the IAM key created at start).
    private(set) var accessKeyID = "testkey"
    private(set) var secretAccessKey = "testsecret"

    var endpoint: String { "http://\(host):\(port)" }
    var pid: Int32 { slot.pid }

    static var motoBinary: String { TestSupport.venvBin + "/moto_server" }
    static var python: String { TestSupport.venvBin + "/python" }
    static var available: Bool { FileManager.default.isExecutableFile(atPath: motoBinary) }

    private init(dir: String, port: Int, auth: Bool, namespace: NetNamespace?) {
        self.dir = dir
        self.port = port
        self.auth = auth
        self.namespace = namespace
        self.host = namespace?.innerAddress ?? "127.0.0.1"
    }

    /// Starts moto and waits until it answers. In auth mode, creates an IAM
    /// key (`accessKeyID`/`secretAccessKey`) and the buckets in `buckets`.
    static func start(auth: Bool = false, buckets: [String] = [], in namespace: NetNamespace? = nil) async throws -> MotoServer {
        guard available else {
            throw TestFailure("moto_server not found at \(motoBinary); run scripts/install-deps.sh")
        }
        let server = MotoServer(dir: try TestSupport.makeTempDir("moto"), port: TestSupport.freePort(), auth: auth, namespace: namespace)
        do {
            try await server.launch()
            if auth {
                try await server.bootstrapAuth(buckets: buckets)
            } else {
                for bucket in buckets { try await server.createBucket(bucket) }
            }
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    private func launch() async throws {
        var env = ["AWS_ACCESS_KEY_ID": "bootstrap", "AWS_SECRET_ACCESS_KEY": "bootstrap", "AWS_DEFAULT_REGION": "us-east-1"]
        // 4 bootstrap calls: create-user, create-access-key, put-user-policy, create-bucket.
        if auth { env["INITIAL_NO_AUTH_ACTION_COUNT"] = "4" }
        let command = (Self.motoBinary, ["-H", host, "-p", String(port)])
        let (executable, arguments) = namespace?.wrap(command.0, command.1) ?? command
        let process = try await Spawned.start(executable, arguments, environment: env)
        slot.set(process)
        let ready = await TestSupport.waitUntil(timeout: .seconds(30)) {
            guard process.isRunning else { return false }
            let r = try? await HTTPClient.shared.perform(HTTPRequest(method: "GET", url: "\(endpoint)/moto-api/", connectTimeout: .seconds(1), timeout: .seconds(2)))
            return r?.status == 200
        }
        guard ready else {
            throw TestFailure("moto_server did not come up on port \(port): \(process.stderr.suffix(2000))")
        }
    }

    /// Creates the IAM user, its key and policy, and the buckets, using the
    /// bootstrap allowance; every later request must be signed correctly.
    private func bootstrapAuth(buckets: [String]) async throws {
        let script = """
            import boto3, json, sys
            ep = sys.argv[1]
            kw = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
            iam = boto3.client("iam", **kw)
            iam.create_user(UserName="guardian")
            key = iam.create_access_key(UserName="guardian")["AccessKey"]
            iam.put_user_policy(UserName="guardian", PolicyName="all", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            s3 = boto3.client("s3", **kw)
            for b in sys.argv[2:]:
                s3.create_bucket(Bucket=b)
            print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
            """
        precondition(buckets.count <= 1, "auth mode allows one bootstrap bucket")
        let r = try await run(Self.python, ["-c", script, endpoint] + buckets)
        guard r.status == 0,
              let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: String],
              let id = json["id"], let secret = json["secret"]
        else { throw TestFailure("moto IAM bootstrap failed: \(r.stderr.suffix(2000))") }
        accessKeyID = id
        secretAccessKey = secret
    }

    /// A location in this server's bucket with working credentials.
    func location(bucket: String, path: String = "db", partSize: Int64 = 5 << 20) -> S3Location {
        S3Location(
            bucket: bucket, path: path, region: "us-east-1", endpoint: endpoint, forcePathStyle: true,
            accessKeyID: accessKeyID, secretAccessKey: Secret(secretAccessKey), partSize: partSize)
    }

    /// Signs like guardian does (for raw setup and inspection in tests).
    func raw(_ method: String, _ pathAndQuery: String, body: [UInt8] = [], headers: [HTTPHeader] = []) async throws -> HTTPResponse {
        let request = HTTPRequest(
            method: method, url: endpoint + pathAndQuery,
            headers: [HTTPHeader("x-amz-content-sha256", Crypto.sha256Hex(body))] + headers
                + (body.isEmpty ? [] : [HTTPHeader("Content-Type", "application/octet-stream")]),
            body: body.isEmpty && method != "PUT" ? .none : .bytes(body),
            connectTimeout: .seconds(2), timeout: .seconds(20),
            sigV4: HTTPRequest.AWSSigV4(provider: "aws:amz:us-east-1:s3", accessKeyID: accessKeyID, secretAccessKey: Secret(secretAccessKey)))
        return try await HTTPClient.shared.perform(request)
    }

    func createBucket(_ name: String) async throws {
        let r = try await raw("PUT", "/\(name)")
        guard r.status == 200 else { throw TestFailure("create bucket \(name): HTTP \(r.status) \(r.bodyText)") }
    }

    /// Every key in a bucket under a prefix, by boto3 (an independent client).
    func listKeys(bucket: String, prefix: String) async throws -> [String: (size: Int64, etag: String, timestamp: String?)] {
        let script = """
            import boto3, json, sys
            s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id=sys.argv[4], aws_secret_access_key=sys.argv[5])
            out = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3]):
                for o in page.get("Contents", []):
                    h = s3.head_object(Bucket=sys.argv[2], Key=o["Key"])
                    out[o["Key"]] = {"size": o["Size"], "etag": o["ETag"].strip('"'), "ts": h.get("Metadata", {}).get("litestream-timestamp")}
            print(json.dumps(out))
            """
        let r = try await run(Self.python, ["-c", script, endpoint, bucket, prefix, accessKeyID, secretAccessKey])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: [String: Any]] else {
            throw TestFailure("boto3 listing failed: \(r.stderr.suffix(2000))")
        }
        var out: [String: (size: Int64, etag: String, timestamp: String?)] = [:]
        for (key, v) in json {
            out[key] = ((v["size"] as? NSNumber)?.int64Value ?? -1, v["etag"] as? String ?? "", v["ts"] as? String)
        }
        return out
    }

    func reset() async throws {
        _ = try await HTTPClient.shared.perform(HTTPRequest(method: "POST", url: "\(endpoint)/moto-api/reset", body: .bytes([]), timeout: .seconds(5)))
    }

    /// SIGKILL by PID (the server vanishes mid-request) and wait for it.
    func kill() async {
        let process = slot.current
        guard let process else { return }
        process.signal(SIGKILL)
        await process.wait(timeout: .seconds(10))
        process.removeFiles()
    }

    func pause() { slot.current?.signal(SIGSTOP) }
    func resume() { slot.current?.signal(SIGCONT) }

    /// Starts a fresh server on the same port (moto keeps no state: buckets
    /// must be created again).
    func restart() async throws {
        await kill()
        try await launch()
    }

    var log: String { slot.log }

    func stop() {
        slot.stop(removing: dir)
    }

    deinit { stop() }
}
