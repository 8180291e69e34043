console.log('onnx-compress cli placeholder', process.argv.slice(2));
