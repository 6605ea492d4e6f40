/**
 * Finding Python 3 with PyTorch for the Python tap's tests.
 *
 * @module
 */

/** The Python interpreter the tests run (`PYTHON`, else `python3`). */
export const PYTHON = Deno.env.get("PYTHON") ?? "python3";

/**
 * True when `PYTHON` runs and imports torch.
 *
 * @example
 * ```ts
 * if (!await hasPythonTorch()) console.error("install python3-torch");
 * ```
 */
export async function hasPythonTorch(): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(PYTHON, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    return false;
  }
}
