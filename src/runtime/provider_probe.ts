/**
 * Child process of `providerAvailability` (`provider.ts`): opens the one-node
 * session with the GPU provider named on the command line and prints
 * `{"available": …, "reason"?: …}` as one JSON line. Whatever the native
 * libraries print on stderr stays in this process.
 *
 * Usage: `deno run -A src/runtime/provider_probe.ts webgpu|cuda`
 *
 * @module
 */
import { GPU_PROVIDERS, type GpuProvider, openTinySession } from "./provider.ts";

if (import.meta.main) {
  const provider = Deno.args[0] as GpuProvider;
  const answer = (GPU_PROVIDERS as readonly string[]).includes(provider)
    ? await openTinySession(provider)
    : { available: false, reason: `unknown provider '${provider}'` };
  console.log(JSON.stringify(answer));
  Deno.exit(0);
}
