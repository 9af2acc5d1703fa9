import { S3Server } from "./src/s3server/s3-server.ts";
const server = new S3Server({ credentials: { K: { secretAccessKey: "Ssecret" } } });
server.start();
server.objects.createBucket("bench");
console.log(server.url);
process.stdin.on("data", (d) => { server.faults.latencyMs = Number(String(d).trim()); console.log("latency", server.faults.latencyMs); });
