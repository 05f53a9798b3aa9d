// Preloaded into the Node Portkey gateway by benchmarks/run.py (node --import): the gateway
// listens on every interface and has no option for it; keep the benchmark on loopback.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args.length < 2 || typeof args[1] !== "string")) {
    const rest = args.slice(1).filter((a) => a !== undefined && a !== null);
    return listen.call(this, args[0], "127.0.0.1", ...rest);
  }
  return listen.apply(this, args);
};
