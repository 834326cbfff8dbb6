// What every TypeScript SDK scenario here shares: a step recorder that keeps what each step
// returned or threw (the Python test reads the records), and the shapes it records.
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function describe(error) {
  return { name: error?.name, code: error?.code, message: String(error?.message ?? error) };
}

export function answer(result) {
  return { isError: Boolean(result.isError), structured: result.structuredContent ?? null };
}

// A list of records; `step(name, body)` appends {step, ...what body returned, ms}, or
// {step, thrown, ms} when it threw.
export function stepRecorder(records) {
  return async function step(name, body) {
    const started = Date.now();
    try {
      records.push({ step: name, ...(await body()), ms: Date.now() - started });
    } catch (error) {
      records.push({ step: name, thrown: describe(error), ms: Date.now() - started });
    }
  };
}
