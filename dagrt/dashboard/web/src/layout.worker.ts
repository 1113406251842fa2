/// <reference lib="webworker" />
/** Computes the DAG layout off the main thread. In: LayoutInput. Out: Layout. */
import { layoutBuffers, layoutDag, type LayoutInput } from './layout';

const scope = self as unknown as DedicatedWorkerGlobalScope;

scope.onmessage = (event: MessageEvent<LayoutInput & { id: number }>) => {
  const { id, ...input } = event.data;
  const layout = layoutDag(input);
  scope.postMessage({ id, layout }, layoutBuffers(layout));
};
