// The demo page's SSE parser (class SseParser in src/demo.html, taken from
// the page itself) run in node over streams given on stdin, fed the way
// the page feeds it: bytes through a streaming TextDecoder, in chunks. For
// tests/browser_demo.rs, which compares the result with the spec-following
// parser of the Rust tests.
//
//   node sse_parser.mjs PAGE.html < cases.json
//
// stdin: a JSON array of streams (strings). stdout: a JSON array, per
// stream, of the events dispatched ({type, data, lastEventId, hasId}) and
// the last id and retry seen; or {error} when feeding the same bytes in
// other chunks (every split in two, and byte by byte) gave another result.
import { readFileSync } from "node:fs";

const html = readFileSync(process.argv[2], "utf8");
const start = html.indexOf("class SseParser {");
const end = html.indexOf("\n}\n", start);
if (start < 0 || end < 0) throw new Error("no class SseParser in the page");
const SseParser = new Function(html.slice(start, end + 2) + "\nreturn SseParser;")();

function run(bytes, chunks) {
  const events = [];
  let lastId = "";
  const parser = new SseParser(e => events.push(e), id => { lastId = id; });
  const decoder = new TextDecoder();
  for (const chunk of chunks(bytes)) parser.push(decoder.decode(chunk, { stream: true }));
  parser.push(decoder.decode());
  parser.end();
  return JSON.stringify({ events, lastId, retry: parser.retry });
}

const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map(text => {
  const bytes = new TextEncoder().encode(text);
  const whole = run(bytes, b => [b]);
  for (let i = 1; i < bytes.length; i++) {
    const split = run(bytes, b => [b.subarray(0, i), b.subarray(i)]);
    if (split !== whole) return { error: `split at byte ${i}: ${split} != ${whole}` };
  }
  const single = run(bytes, b => [...b].map(x => Uint8Array.of(x)));
  if (single !== whole) return { error: `byte by byte: ${single} != ${whole}` };
  return JSON.parse(whole);
});
console.log(JSON.stringify(out));
