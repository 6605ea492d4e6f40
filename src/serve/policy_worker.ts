/**
 * Worker entry of {@linkcode PolicyCompiler} (`policy_compiler.ts`): reads,
 * validates and compiles policy files off the main thread and posts back the
 * compiled set as plain data, or the problems found.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { ConfigError, formatIssue } from "../config/errors.ts";
import { readPolicyFile } from "../config/policy_file.ts";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import { compilePolicySet, PolicyCompileError, policySetData } from "../core/policy/compile.ts";
import { type CompileRequest, type CompileResponse, WORKER_READY } from "./policy_compiler.ts";

self.onmessage = async (e: MessageEvent<CompileRequest>) => {
  const { id, paths, signals, limits } = e.data;
  let reply: CompileResponse;
  try {
    const files: PolicyFileDef[] = [];
    const fileWarnings: string[] = [];
    for (const path of paths) {
      const { def, warnings } = await readPolicyFile(path, limits);
      files.push(def);
      for (const w of warnings) fileWarnings.push(formatIssue(w));
    }
    const set = compilePolicySet(files, signals, { limits });
    reply = { id, ok: true, data: policySetData(set), fileWarnings };
  } catch (err) {
    if (err instanceof ConfigError) reply = { id, ok: false, kind: "config", issues: err.issues };
    else if (err instanceof PolicyCompileError) {
      reply = { id, ok: false, kind: "compile", problems: err.problems, warnings: err.warnings };
    } else {
      const x = err instanceof Error ? err : new Error(String(err));
      reply = { id, ok: false, kind: "other", name: x.name, message: x.message };
    }
  }
  self.postMessage(reply);
};

// loaded: from now on a failure is a failed compile, not a worker that cannot start
self.postMessage(WORKER_READY);
