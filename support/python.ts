/**
 * Finding a Python 3 that imports torch, for the Python tap's tests. The
 * `python3` first on PATH may be another installation (pyenv) than the one
 * Debian's `python3-torch` installs into (`/usr/bin/python3`), so both are
 * tried, after `PYTHON` when it is set.
 *
 * @module
 */

const CANDIDATES = [
  ...(Deno.env.get("PYTHON") ? [Deno.env.get("PYTHON")!] : []),
  "python3",
  "/usr/bin/python3",
];

async function importsTorch(python: string): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(python, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    return false;
  }
}

let found: Promise<string | null> | null = null;

/**
 * The first of `PYTHON`, `python3`, `/usr/bin/python3` that imports torch,
 * or null.
 *
 * @example
 * ```ts
 * const python = await findPythonWithTorch(); // "/usr/bin/python3"
 * ```
 */
export function findPythonWithTorch(): Promise<string | null> {
  found ??= (async () => {
    for (const python of CANDIDATES) if (await importsTorch(python)) return python;
    return null;
  })();
  return found;
}

/**
 * True when some Python 3 here imports torch.
 *
 * @example
 * ```ts
 * if (!await hasPythonTorch()) console.error("install python3-torch");
 * ```
 */
export async function hasPythonTorch(): Promise<boolean> {
  return (await findPythonWithTorch()) !== null;
}
