/**
 * The errors every SAE format reader raises: {@linkcode SaeFormatError} for a
 * folder, config or weights file latentwatch cannot load, a helper that names
 * a bad config key, and reading a JSON file with its path in any error.
 *
 * @module
 */
/** An SAE folder or config that latentwatch cannot load. */
export class SaeFormatError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SaeFormatError";
  }
}

/** `${source}: key 'k': expected …, found …` */
export function badKey(source: string, key: string, expected: string, found: unknown): never {
  throw new SaeFormatError(
    `${source}: key '${key}': expected ${expected}, found ${
      found === undefined ? "nothing (missing)" : JSON.stringify(found)
    }`,
  );
}

/** Read and parse a JSON file, naming it in any error. */
export async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new SaeFormatError(`${path}: cannot read the ${what}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SaeFormatError(`${path}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}
